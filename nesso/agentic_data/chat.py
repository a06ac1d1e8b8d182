"""Conversation pieces shared by all scenarios: system prompts, requests no tool can serve, tool errors and the
way several requests are put in one user turn."""

from __future__ import annotations

import json
from typing import Any

from nesso.agentic_data.render import L, join, long_date
from nesso.agentic_data.spec import Ctx


def system_prompt(c: Ctx) -> str:
    day, iso = long_date(c.today, c.lang), c.today.isoformat()
    return c.pick([f"You are Nesso, a helpful assistant. Today is {day}.",
                   f"You are a helpful bilingual assistant that can use tools. Current date: {iso}.",
                   f"You are Nesso, an assistant for work and everyday tasks. Use the tools when they help. Today is {day}."],
                  [f"Sei Nesso, un assistente disponibile. Oggi è {day}.",
                   f"Sei un assistente bilingue che può usare degli strumenti. Data di oggi: {iso}.",
                   f"Sei Nesso, un assistente per il lavoro e la vita di tutti i giorni. Usa gli strumenti quando servono. "
                   f"Oggi è {day}."])


def structured_system_prompt(c: Ctx, schema: dict[str, Any]) -> str:
    text = json.dumps(schema, ensure_ascii=False)
    return c.t(f"You are Nesso, a data-extraction assistant. Today is {long_date(c.today, 'en')}.\n"
               f"Reply only with a JSON object that matches this JSON schema, with no other text:\n{text}",
               f"Sei Nesso, un assistente per l'estrazione di dati. Oggi è {long_date(c.today, 'it')}.\n"
               f"Rispondi solo con un oggetto JSON conforme a questo JSON schema, senza altro testo:\n{text}")


def combine_requests(c: Ctx, requests: list[str]) -> str:
    """Several requests in one user turn, phrased in one of a few natural ways."""
    numbered = "\n".join(f"{i}) {r}" for i, r in enumerate(requests, 1))
    style = c.rng.randrange(3)
    if style == 0:
        return " ".join(requests)
    if style == 1:
        return c.t("A few things, please:\n", "Mi servono alcune cose:\n") + numbered
    return requests[0] + "".join(c.t(" Also: ", " Inoltre: ") + r for r in requests[1:])


def combine_answers(c: Ctx, answers: list[str]) -> str:
    if c.rng.random() < 0.5:
        return "\n\n".join(answers)
    return c.t("Here you go.\n\n", "Ecco qui.\n\n") + "\n\n".join(answers)


# ---- requests answered without tools (irrelevance) -------------------------------------------------------
# (user, answer) per language. The last HELDOUT_SMALL_TALK appear only in held-out rows.
SMALL_TALK: list[tuple[L, L]] = [
    (L("Who wrote The Divine Comedy?", "Chi ha scritto la Divina Commedia?"),
     L("Dante Alighieri wrote it, in the early 14th century.", "L'ha scritta Dante Alighieri, all'inizio del Trecento.")),
    (L("What's the capital of Australia?", "Qual è la capitale dell'Australia?"),
     L("The capital of Australia is Canberra.", "La capitale dell'Australia è Canberra.")),
    (L("Give me a synonym for \"happy\".", "Dammi un sinonimo di \"felice\"."),
     L("\"Cheerful\" works, or \"glad\", \"joyful\" and \"content\".", "\"Contento\", oppure \"lieto\", \"gioioso\" o \"allegro\".")),
    (L("How many days are there in a leap year?", "Quanti giorni ha un anno bisestile?"),
     L("A leap year has 366 days.", "Un anno bisestile ha 366 giorni.")),
    (L("Tell me a fun fact about octopuses.", "Dimmi una curiosità sui polpi."),
     L("Octopuses have three hearts and blue blood.", "I polpi hanno tre cuori e il sangue blu.")),
    (L("What does HTTP stand for?", "Cosa significa HTTP?"),
     L("HyperText Transfer Protocol, the protocol web pages travel over.",
       "HTTP sta per HyperText Transfer Protocol, il protocollo con cui viaggiano le pagine web.")),
    (L("Write a haiku about the sea.", "Scrivi un haiku sul mare."),
     L("Waves fold into foam,\nthe tide keeps its old promise,\nsalt on the still stones.",
       "Onda che torna,\nsussurra alla sabbia\nstorie di sale.")),
    (L("Thanks, that's all for today!", "Grazie, per oggi è tutto!"),
     L("You're welcome! Have a great day.", "Prego! Buona giornata.")),
    (L("How do you say \"good morning\" in Italian?", "Come si dice \"buongiorno\" in inglese?"),
     L("\"Buongiorno\".", "Si dice \"good morning\".")),
    (L("What is 15% of 80?", "Quanto fa il 15% di 80?"), L("15% of 80 is 12.", "Il 15% di 80 è 12.")),
    (L("Explain in one sentence what a firewall does.", "Spiega in una frase cosa fa un firewall."),
     L("A firewall filters network traffic, allowing or blocking connections according to security rules.",
       "Un firewall filtra il traffico di rete, permettendo o bloccando le connessioni in base a regole di sicurezza.")),
    (L("Who painted the Mona Lisa?", "Chi ha dipinto la Gioconda?"),
     L("Leonardo da Vinci, in the early 1500s.", "Leonardo da Vinci, nei primi anni del Cinquecento.")),
    (L("What's the difference between weather and climate?", "Che differenza c'è tra tempo meteorologico e clima?"),
     L("Weather is what the atmosphere does over hours or days; climate is the average of the weather over decades.",
       "Il tempo è lo stato dell'atmosfera in ore o giorni; il clima è la media del tempo su decenni.")),
    (L("Can you recommend a good habit for better sleep?", "Mi consigli una buona abitudine per dormire meglio?"),
     L("Keep a regular schedule: go to bed and get up at the same time every day, weekends included.",
       "Mantieni orari regolari: vai a letto e alzati alla stessa ora ogni giorno, anche nel fine settimana.")),
    (L("At what temperature does water boil at sea level?", "A che temperatura bolle l'acqua al livello del mare?"),
     L("At 100 °C (212 °F).", "A 100 °C.")),
    (L("Who was the first person to walk on the Moon?", "Chi è stato il primo uomo a camminare sulla Luna?"),
     L("Neil Armstrong, in July 1969, during the Apollo 11 mission.",
       "Neil Armstrong, nel luglio 1969, con la missione Apollo 11.")),
    (L("Suggest a name for a black cat.", "Suggeriscimi un nome per un gatto nero."),
     L("How about \"Pepper\"? \"Shadow\" and \"Licorice\" work too.",
       "Che ne dici di \"Pece\"? Vanno bene anche \"Ombra\" e \"Liquirizia\".")),
    (L("What's the largest planet in the solar system?", "Qual è il pianeta più grande del sistema solare?"),
     L("Jupiter.", "Giove.")),
    (L("Good morning! How are you?", "Buongiorno! Come stai?"),
     L("Good morning! I'm fine, thanks. How can I help you today?",
       "Buongiorno! Sto bene, grazie. Come posso aiutarti oggi?")),
    (L("How many legs does a spider have?", "Quante zampe ha un ragno?"), L("Eight.", "Otto.")),
    (L("What's the opposite of \"ancient\"?", "Qual è il contrario di \"antico\"?"),
     L("\"Modern\".", "\"Moderno\".")),
]
HELDOUT_SMALL_TALK = 10


def _or(items: list[str], lang: str) -> str:
    items = sorted(set(items))
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + (" or " if lang == "en" else " o ") + items[-1]


def cannot_help(c: Ctx, wanted: L, offered: list[L]) -> str:
    """Answer to a request for a kind of tool the conversation does not offer."""
    have_en, have_it = _or([o.en for o in offered], "en"), _or([o.it for o in offered], "it")
    return c.pick([f"Sorry, I can't do that here: the tools I have don't cover {wanted.en} requests. "
                   f"I can help with {have_en} requests instead.",
                   f"I don't have a tool for {wanted.en} requests, so I can't do that. The tools here cover {have_en}."],
                  [f"Mi dispiace, qui non posso farlo: gli strumenti che ho non coprono richieste di {wanted.it}. "
                   f"Posso aiutarti invece con richieste di {have_it}.",
                   f"Non ho uno strumento per richieste di {wanted.it}, quindi non posso farlo. Gli strumenti "
                   f"disponibili coprono {have_it}."])


# ---- tool errors --------------------------------------------------------------------------------------
TRANSIENT = [{"code": 503, "message": "Service temporarily unavailable, please retry"},
             {"code": 429, "message": "Rate limit exceeded, retry in 2 seconds"},
             {"code": 504, "message": "Upstream timeout"}]


def permanent_error(c: Ctx, params: list[str]) -> dict[str, Any]:
    kind = c.rng.randrange(3)
    if kind == 0:
        return {"code": 404, "message": "No record matches the given parameters"}
    if kind == 1:
        return {"code": 403, "message": "Permission denied for this operation"}
    p = params[c.rng.randrange(len(params))]
    return {"code": 422, "message": f"Invalid value for '{p}'", "param": p}


def explain_error(c: Ctx, tool: str, err: dict[str, Any]) -> str:
    code = err["code"]
    if code == 404:
        return c.pick([f"I couldn't find anything: {tool} found no match for the details you gave (error 404). "
                       "Could you double-check them?",
                       "The service answered that nothing matches those details (404 not found). Can you check the data "
                       "and tell me again?"],
                      [f"Non ho trovato nulla: {tool} non ha risultati per i dati che mi hai dato (errore 404). "
                       "Puoi ricontrollarli?",
                       "Il servizio risponde che nulla corrisponde a quei dati (404, non trovato). Puoi verificarli e "
                       "ridirmeli?"])
    if code == 403:
        return c.t(f"I'm not allowed to do that: {tool} denied permission (error 403). You may need to ask an "
                   "administrator for access.",
                   f"Non ho i permessi per farlo: {tool} ha negato l'accesso (errore 403). Potrebbe servire "
                   "l'autorizzazione di un amministratore.")
    if code == 422:
        return c.t(f"{tool} rejected the value of \"{err['param']}\" (error 422). Could you give me a different value?",
                   f"{tool} ha rifiutato il valore di \"{err['param']}\" (errore 422). Puoi indicarmi un valore diverso?")
    return c.t(f"{tool} is still unavailable (error {code}: {err['message']}). I tried twice; please try again in a "
               "few minutes.",
               f"{tool} non è ancora disponibile (errore {code}: {err['message']}). Ho riprovato due volte; riprova tra "
               "qualche minuto.")


# ---- openings: what people type first in a chat (the opt-in openings split) -------------------------------
# (user, answer) per language, answered without tools.
GREETINGS: list[tuple[L, L]] = [
    (L("Hi!", "Ciao!"), L("Hi! How can I help you today?", "Ciao! Come posso aiutarti oggi?")),
    (L("Hello, how are you?", "Ciao, come stai?"),
     L("I'm fine, thanks! What can I do for you?", "Sto bene, grazie! Cosa posso fare per te?")),
    (L("Good evening!", "Buonasera!"), L("Good evening! How can I help?", "Buonasera! Come posso aiutarti?")),
    (L("Hey, are you there?", "Ehi, ci sei?"),
     L("Yes, I'm here. What do you need?", "Sì, ci sono. Di cosa hai bisogno?")),
    (L("Nice to meet you!", "Piacere di conoscerti!"),
     L("Nice to meet you too! How can I help?", "Piacere mio! Come posso aiutarti?")),
    (L("Thanks a lot!", "Grazie mille!"), L("You're welcome! Anything else?", "Prego! Serve altro?")),
    (L("Ok, bye!", "Ok, a presto!"), L("Bye! Have a nice day.", "A presto! Buona giornata.")),
    (L("How's it going?", "Come va?"),
     L("All good, thanks! What would you like to do?", "Tutto bene, grazie! Cosa vuoi fare?")),
]
# Questions about the assistant itself, answered from the tools the conversation offers.
ABOUT_ME: list[L] = [L("What can you do?", "Cosa sai fare?"), L("Who are you?", "Chi sei?"),
                     L("How can you help me?", "Come puoi aiutarmi?"), L("What tools do you have?", "Quali strumenti hai?"),
                     L("Hi, what are you able to do?", "Ciao, cosa sei in grado di fare?")]
# What each of nesso's own tools lets the assistant do (the two database tools share one phrase).
ABILITIES: dict[str, L] = {
    "calculator": L("do calculations", "fare calcoli"),
    "get_current_time": L("tell you the time and date anywhere in the world", "dirti l'ora e la data in tutto il mondo"),
    "convert_units": L("convert units of measure", "convertire unità di misura"),
    "list_tables": L("answer questions about the shop database", "rispondere a domande sul database del negozio"),
    "query_database": L("answer questions about the shop database", "rispondere a domande sul database del negozio"),
}


def about_me(c: Ctx, tool_names: list[str]) -> str:
    abilities = list(dict.fromkeys(ABILITIES[n](c.lang) for n in tool_names if n in ABILITIES))
    return c.t(f"I'm Nesso, an assistant. Here I can {join(abilities, 'en')}. What would you like to do?",
               f"Sono Nesso, un assistente. Qui posso {join(abilities, 'it')}. Cosa vuoi fare?")

