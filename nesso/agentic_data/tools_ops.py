"""Tools of the cybersecurity, files/databases, communication and productivity domains."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from nesso.agentic_data.render import (
    L,
    Val,
    choice_val,
    date_val,
    dp,
    join,
    num,
    person,
    pick,
    time_val,
)
from nesso.agentic_data.spec import (
    Ctx,
    Missing,
    T,
    ToolSpec,
    array,
    boolean,
    date_param,
    enum,
    integer,
    number,
    obj,
    s,
    time_param,
)

# ==== cybersecurity ===============================================================================
IP_PREFIXES = ["185.220.101", "45.155.205", "193.32.162", "103.75.201", "91.240.118", "62.171.150", "141.98.10", "5.188.206"]
COUNTRIES = {"NL": L("the Netherlands", "Paesi Bassi"), "DE": L("Germany", "Germania"), "RU": L("Russia", "Russia"),
             "CN": L("China", "Cina"), "US": L("the United States", "Stati Uniti"), "BR": L("Brazil", "Brasile"),
             "IT": L("Italy", "Italia")}
VERDICTS = {"malicious": L("malicious", "malevolo"), "suspicious": L("suspicious", "sospetto"), "clean": L("clean", "pulito")}


def ip_val(rng: random.Random) -> Val:
    return Val(f"{pick(rng, IP_PREFIXES)}.{rng.randint(2, 254)}")


def _ip_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    score = rng.randint(0, 100)
    verdict = "malicious" if score >= 70 else "suspicious" if score >= 35 else "clean"
    out: dict[str, Any] = {"ip": a["ip"], "risk_score": score, "verdict": verdict, "country": pick(rng, list(COUNTRIES)),
                           "reports_last_30_days": score * rng.randint(1, 6) if verdict != "clean" else rng.randint(0, 2)}
    if a.get("include_history"):
        out["first_reported"] = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return out


def _ip_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    v, country = VERDICTS[r["verdict"]](c.lang), COUNTRIES[r["country"]](c.lang)
    text = c.t(f"{r['ip']} has a risk score of {r['risk_score']}/100 and is rated {v}: {r['reports_last_30_days']} reports "
               f"in the last 30 days, located in {country}.",
               f"{r['ip']} ha un punteggio di rischio di {r['risk_score']}/100 ed è classificato come {v}: "
               f"{r['reports_last_30_days']} segnalazioni negli ultimi 30 giorni, paese: {country}.")
    if "first_reported" in r:
        text += c.t(f" It was first reported on {dp(r['first_reported'], 'en')}.",
                    f" La prima segnalazione risale {dp(r['first_reported'], 'it', 'al')}.")
    return text


check_ip_reputation = ToolSpec(
    name="check_ip_reputation", domain="cybersecurity",
    description="Threat-intelligence reputation of an IPv4 address.",
    parameters=obj({"ip": s("IPv4 address", format="ipv4"),
                    "include_history": boolean("Also return when the address was first reported", False)}, ["ip"]),
    sample=lambda c: {"ip": ip_val(c.rng),
                      "include_history": Val(True, L("including its report history", "compresa la cronologia delle segnalazioni"))},
    result=_ip_result, answer=_ip_answer,
    templates=T(["Is {ip} a malicious IP?", "Check the reputation of {ip}.", "Look up IP {ip}, {include_history}.",
                 "We're seeing traffic from {ip}. Is it known to be bad?"],
                ["L'indirizzo {ip} è malevolo?", "Controlla la reputazione dell'IP {ip}.", "Verifica l'IP {ip}, {include_history}.",
                 "Vediamo traffico da {ip}. È un indirizzo noto come pericoloso?"]),
    missing=[Missing("ip", T(["Can you check whether this IP is dangerous?"], ["Puoi controllare se questo IP è pericoloso?"]),
                     {"en": "Of course: which IP address should I check?", "it": "Certo: quale indirizzo IP devo controllare?"})],
)

PORTS = [21, 22, 25, 53, 80, 110, 143, 443, 3306, 3389, 5432, 6379, 8080, 8443]
HOSTS = ["10.0.0.12", "192.168.1.20", "web01.internal", "db-prod.internal", "172.16.4.7", "mail.example.com"]


def _scan_sample(c: Ctx) -> dict[str, Val]:
    ports = sorted(c.rng.sample(PORTS, c.rng.randint(2, 4)))
    proto = pick(c.rng, ["udp", "tcp"])
    return {"host": Val(pick(c.rng, HOSTS)), "ports": Val(ports, L(join([str(p) for p in ports], "en"), join([str(p) for p in ports], "it"))),
            "protocol": Val(proto, proto.upper())}


def _scan_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    open_ = [p for p in a["ports"] if rng.random() < 0.5]
    return {"host": a["host"], "protocol": a.get("protocol", "tcp"), "open": open_,
            "closed": [p for p in a["ports"] if p not in open_]}


def _scan_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    op, cl = [str(p) for p in r["open"]], [str(p) for p in r["closed"]]
    if not op:
        return c.t(f"None of the scanned ports on {r['host']} are open ({join(cl, 'en')} closed).",
                   f"Nessuna delle porte scansionate su {r['host']} è aperta ({join(cl, 'it')} chiuse).")
    text = c.t(f"On {r['host']} ({r['protocol'].upper()}), open: {join(op, 'en')}.", f"Su {r['host']} ({r['protocol'].upper()}) risultano aperte: {join(op, 'it')}.")
    if cl:
        text += c.t(f" Closed: {join(cl, 'en')}.", f" Chiuse: {join(cl, 'it')}.")
    return text


scan_ports = ToolSpec(
    name="scan_ports", domain="cybersecurity",
    description="Check which of the given ports are open on a host you are authorised to scan.",
    parameters=obj({"host": s("IP address or hostname"),
                    "ports": array("Ports to probe", {"type": "integer", "minimum": 1, "maximum": 65535}, minItems=1, maxItems=100),
                    "protocol": enum("Transport protocol", ["tcp", "udp"], default="tcp")}, ["host", "ports"]),
    sample=_scan_sample, result=_scan_result, answer=_scan_answer,
    templates=T(["Scan ports {ports} on {host}.", "Which of ports {ports} are open on {host}?",
                 "Run a {protocol} scan of {host} on ports {ports}."],
                ["Scansiona le porte {ports} su {host}.", "Quali tra le porte {ports} sono aperte su {host}?",
                 "Fai una scansione {protocol} di {host} sulle porte {ports}."]),
    missing=[Missing("host", T(["Scan ports {ports} for me."], ["Scansionami le porte {ports}."]),
                     {"en": "Which host should I scan? Give me an IP address or hostname.",
                      "it": "Quale host devo scansionare? Indicami un indirizzo IP o un nome host."})],
)

# id, product, CVSS, severity, nickname, summary (en, it)
CVES = [
    ("CVE-2021-44228", "Apache Log4j 2", 10.0, "critical", "Log4Shell",
     L("remote code execution through JNDI lookups in logged strings", "esecuzione di codice da remoto tramite lookup JNDI nelle stringhe registrate nei log")),
    ("CVE-2014-0160", "OpenSSL", 7.5, "high", "Heartbleed",
     L("memory disclosure through the TLS heartbeat extension", "lettura di memoria tramite l'estensione heartbeat di TLS")),
    ("CVE-2017-0144", "Microsoft SMBv1", 8.1, "high", "EternalBlue",
     L("remote code execution in the SMBv1 server", "esecuzione di codice da remoto nel server SMBv1")),
    ("CVE-2023-4966", "Citrix NetScaler ADC and Gateway", 9.4, "critical", "Citrix Bleed",
     L("leak of session tokens from the appliance memory", "fuga dei token di sessione dalla memoria dell'appliance")),
    ("CVE-2021-34527", "Windows Print Spooler", 8.8, "high", "PrintNightmare",
     L("remote code execution through the Print Spooler service", "esecuzione di codice da remoto tramite il servizio Print Spooler")),
    ("CVE-2024-3400", "Palo Alto Networks PAN-OS (GlobalProtect)", 10.0, "critical", None,
     L("OS command injection in the GlobalProtect feature", "command injection nella funzionalità GlobalProtect")),
    ("CVE-2023-23397", "Microsoft Outlook", 9.8, "critical", None,
     L("privilege escalation through crafted reminder sounds", "escalation di privilegi tramite promemoria manipolati")),
]
CVE_BY_ID = {cv[0]: cv for cv in CVES}
SEVERITY = {"critical": L("critical", "critica"), "high": L("high", "alta"), "medium": L("medium", "media"), "low": L("low", "bassa")}


def _cve_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    cve = CVE_BY_ID.get(a["cve_id"])
    if cve is None:
        return {"error": {"code": 404, "message": f"{a['cve_id']} not found"}}
    return {"cve_id": cve[0], "product": cve[1], "cvss": cve[2], "severity": cve[3], "summary": cve[5].en,
            "known_exploited": True}


def _cve_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    _, product, cvss, sev, nick, summary = CVE_BY_ID[r["cve_id"]]
    name = f"{r['cve_id']} ({nick})" if nick else r["cve_id"]
    return c.t(f"{name} affects {product}: {summary.en}. CVSS {cvss} ({sev}), and it is known to be exploited in the wild.",
               f"La {name} riguarda {product}: {summary.it}. Punteggio CVSS {num(cvss, 'it', 1)} (gravità "
               f"{SEVERITY[sev].it}); è nota per essere sfruttata attivamente.")


lookup_cve = ToolSpec(
    name="lookup_cve", domain="cybersecurity",
    description="Details of a published vulnerability by CVE identifier.",
    parameters=obj({"cve_id": s("CVE identifier, e.g. CVE-2021-44228", pattern="^CVE-[0-9]{4}-[0-9]{4,}$")}, ["cve_id"]),
    sample=lambda c: {"cve_id": Val(pick(c.rng, CVES)[0])}, result=_cve_result, answer=_cve_answer,
    templates=T(["What is {cve_id}?", "Look up the details of {cve_id}.", "How severe is {cve_id}?"],
                ["Che cos'è la {cve_id}?", "Cerca i dettagli della {cve_id}.", "Quanto è grave la {cve_id}?"]),
    missing=[Missing("cve_id", T(["Can you look up a CVE for me?"], ["Mi cerchi una CVE?"]),
                     {"en": "Sure: which CVE identifier should I look up (for example CVE-2021-44228)?",
                      "it": "Certo: qual è l'identificativo della CVE (ad esempio CVE-2021-44228)?"})],
)

BLOCK_REASONS = {"brute_force": L("brute-force login attempts", "tentativi di accesso brute force"),
                 "malware": L("malware distribution", "distribuzione di malware"),
                 "scanning": L("port scanning", "scansione delle porte"), "spam": L("spam", "spam")}


def _hours(h: int) -> L:
    return L(f"{h} hour{'s' if h != 1 else ''}", f"{h} or{'e' if h != 1 else 'a'}")


def _block_sample(c: Ctx) -> dict[str, Val]:
    h = c.rng.choice([1, 6, 12, 24, 48, 72, 168])
    return {"ip": ip_val(c.rng), "duration_hours": Val(h, _hours(h)), "reason": choice_val(c.rng, BLOCK_REASONS)}


def _block_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    h = r["duration_hours"]
    return c.t(f"Done: {r['ip']} is blocked on the firewall for {_hours(h).en} (rule {r['rule_id']}).",
               f"Fatto: {r['ip']} è bloccato sul firewall per {_hours(h).it} (regola {r['rule_id']}).")


block_ip = ToolSpec(
    name="block_ip", domain="cybersecurity",
    description="Add a temporary firewall rule that drops all traffic from an IPv4 address.",
    parameters=obj({"ip": s("IPv4 address", format="ipv4"),
                    "duration_hours": integer("How long the block lasts", minimum=1, maximum=720),
                    "reason": enum("Why the address is blocked", list(BLOCK_REASONS))}, ["ip", "duration_hours"]),
    sample=_block_sample,
    result=lambda a, rng, lang: {"rule_id": f"FW-{rng.randint(10000, 99999)}", "ip": a["ip"],
                                 "duration_hours": a["duration_hours"], "status": "active"},
    answer=_block_answer,
    templates=T(["Block {ip} for {duration_hours}.", "Add a firewall block on {ip} for {duration_hours}, reason: {reason}.",
                 "Ban {ip} for {duration_hours}: we saw {reason} from it."],
                ["Blocca {ip} per {duration_hours}.", "Aggiungi un blocco firewall su {ip} per {duration_hours}, motivo: {reason}.",
                 "Banna {ip} per {duration_hours}: abbiamo rilevato {reason}."]),
    missing=[Missing("duration_hours", T(["Block {ip} on the firewall."], ["Blocca {ip} sul firewall."]),
                     {"en": "For how long should I block {ip}? Tell me the number of hours (up to 720).",
                      "it": "Per quanto tempo devo bloccare {ip}? Dimmi il numero di ore (massimo 720)."})],
)
MALWARE = ["Emotet", "AgentTesla", "LockBit", "Formbook", "Qakbot"]


def _hash_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    bad = rng.random() < 0.6
    out: dict[str, Any] = {"sha256": a["sha256"], "verdict": "malicious" if bad else "clean",
                           "detections": f"{rng.randint(25, 64) if bad else 0}/70"}
    if bad:
        out["family"] = pick(rng, MALWARE)
    if a.get("sandbox"):
        out["sandbox"] = {"network_connections": rng.randint(2, 9) if bad else 0, "files_dropped": rng.randint(1, 5) if bad else 0}
    return out


def _hash_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    short = r["sha256"][:12] + "…"
    if r["verdict"] == "clean":
        text = c.t(f"The file {short} looks clean: {r['detections']} engines flag it.",
                   f"Il file {short} sembra pulito: {r['detections']} motori lo segnalano.")
    else:
        text = c.t(f"The file {short} is malicious: {r['detections']} detections, identified as {r['family']}. Do not open it.",
                   f"Il file {short} è malevolo: {r['detections']} rilevamenti, identificato come {r['family']}. Non aprirlo.")
    if "sandbox" in r:
        sb = r["sandbox"]
        text += c.t(f" In the sandbox it opened {sb['network_connections']} network connections and dropped {sb['files_dropped']} files.",
                    f" In sandbox ha aperto {sb['network_connections']} connessioni di rete e creato {sb['files_dropped']} file.")
    return text


analyze_file_hash = ToolSpec(
    name="analyze_file_hash", domain="cybersecurity",
    description="Malware verdict for a file identified by its SHA-256 hash.",
    parameters=obj({"sha256": s("SHA-256 of the file, 64 lowercase hex digits", pattern="^[a-f0-9]{64}$"),
                    "sandbox": boolean("Also detonate the sample in a sandbox", False)}, ["sha256"]),
    sample=lambda c: {"sha256": Val(f"{c.rng.getrandbits(256):064x}"),
                      "sandbox": Val(True, L("run it in the sandbox too", "eseguilo anche in sandbox"))},
    result=_hash_result, answer=_hash_answer,
    templates=T(["Is the file with SHA-256 {sha256} malicious?", "Check this hash: {sha256}", "Analyze {sha256} and {sandbox}."],
                ["Il file con SHA-256 {sha256} è malevolo?", "Controlla questo hash: {sha256}", "Analizza {sha256}; {sandbox}."]),
    missing=[Missing("sha256", T(["I got a weird attachment, can you check if it's malware?"],
                                 ["Ho ricevuto un allegato strano, puoi controllare se è un malware?"]),
                     {"en": "Sure. Send me the file's SHA-256 hash and I'll analyze it.",
                      "it": "Certo. Mandami l'hash SHA-256 del file e lo analizzo."})],
)

# ==== files and databases =========================================================================
DIRS = {"/var/log": ["*.log"], "/srv/reports": ["*.pdf", "*.csv"], "/data/exports": ["*.csv", "*.json"],
        "/etc/nginx": ["*.conf"], "/home/ops/notes": ["*.md", "*.txt"]}
FILE_STEMS = {"*.log": ["syslog", "auth", "nginx-error", "backup"], "*.pdf": ["q1_summary", "audit_2025", "budget_2026"],
              "*.csv": ["customers", "orders_march", "inventory"], "*.json": ["export_full", "users"],
              "*.conf": ["nginx", "default", "ssl"], "*.md": ["todo", "runbook"], "*.txt": ["notes", "passwords_old"]}


def _dir_sample(c: Ctx) -> dict[str, Val]:
    d = pick(c.rng, list(DIRS))
    return {"directory": Val(d), "pattern": Val(pick(c.rng, DIRS[d])),
            "recursive": Val(True, L("including subfolders", "comprese le sottocartelle"))}


def _list_files_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    patterns = [a["pattern"]] if a.get("pattern") in FILE_STEMS else DIRS.get(a["directory"], ["*.txt"])
    files = []
    for pat in patterns:
        for stem in rng.sample(FILE_STEMS[pat], k=min(len(FILE_STEMS[pat]), rng.randint(2, 3))):
            sub = "archive/" if a.get("recursive") and rng.random() < 0.3 else ""
            files.append({"name": f"{sub}{stem}{pat[1:]}", "size_kb": rng.randint(1, 9000),
                          "modified": f"2026-{rng.randint(1, 2):02d}-{rng.randint(1, 28):02d}"})
    files.sort(key=lambda f: f["modified"], reverse=True)
    return {"directory": a["directory"], "files": files}


def _list_files_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    lines = "\n".join(f"- {f['name']} ({num(f['size_kb'], c.lang)} KB, {f['modified']})"
                      for f in r["files"])
    return c.t(f"{len(r['files'])} files in {r['directory']}, newest first:\n{lines}",
               f"{len(r['files'])} file in {r['directory']}, dal più recente:\n{lines}")


list_files = ToolSpec(
    name="list_files", domain="files_databases",
    description="List files in a directory of the file server.",
    parameters=obj({"directory": s("Absolute directory path"), "pattern": s("Glob pattern such as *.log"),
                    "recursive": boolean("Include subdirectories", False)}, ["directory"]),
    sample=_dir_sample, result=_list_files_result, answer=_list_files_answer,
    templates=T(["List the files in {directory}.", "Which {pattern} files are in {directory}?",
                 "Show me all {pattern} files under {directory}, {recursive}."],
                ["Elenca i file in {directory}.", "Quali file {pattern} ci sono in {directory}?",
                 "Mostrami tutti i file {pattern} dentro {directory}, {recursive}."]),
    missing=[Missing("directory", T(["List the {pattern} files."], ["Elencami i file {pattern}."]),
                     {"en": "In which directory should I look?", "it": "In quale cartella devo cercare?"})],
)

FILE_CONTENTS = {
    "/var/log/nginx/error.log": ["2026/02/03 10:14:02 [error] 812#812: *4411 connect() failed (111: Connection refused) while connecting to upstream",
                                 "2026/02/03 10:14:07 [warn] 812#812: *4412 upstream server temporarily disabled",
                                 "2026/02/03 10:15:31 [error] 812#812: *4420 open() \"/srv/www/favicon.ico\" failed (2: No such file or directory)",
                                 "2026/02/03 10:16:00 [notice] 812#812: signal process started"],
    "/srv/reports/q1_summary.txt": ["Q1 2026 summary", "Revenue: 1,240,500 EUR (+8% YoY)", "New customers: 312",
                                    "Churn: 2.1%", "Top region: Lombardia"],
    "/etc/hosts": ["127.0.0.1 localhost", "10.0.0.12 web01.internal", "10.0.0.20 db-prod.internal", "10.0.0.30 mail.internal"],
    "/data/exports/customers.csv": ["id,name,city,since", "1001,Giulia Bianchi,Milano,2021", "1002,Marco Rossi,Torino,2022",
                                    "1003,Emma Clarke,London,2023", "1004,Sara Colombo,Bologna,2024"],
    "/home/ops/notes/runbook.md": ["# Restart procedure", "1. Drain the node from the load balancer",
                                   "2. systemctl restart app", "3. Check /healthz returns 200", "4. Re-enable the node"],
}


def _lines(n: int) -> L:
    return L(f"{n} lines", f"{n} righe")


def _read_sample(c: Ctx) -> dict[str, Val]:
    n = c.rng.choice([2, 3, 5, 10, 20])
    return {"path": Val(pick(c.rng, list(FILE_CONTENTS))), "max_lines": Val(n, _lines(n))}


def _invented_file(path: str, rng: random.Random) -> list[str]:
    """Plausible text for a file another tool listed (list_files, search_documents)."""
    name = path.rsplit("/", 1)[-1]
    stem, _, ext = name.rpartition(".")
    if ext == "log":
        return [f"2026-02-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} "
                f"{pick(rng, ['INFO', 'WARN', 'ERROR'])} "
                f"{pick(rng, ['backup completed', 'disk usage 81%', 'login failed for admin', 'job finished in 42s'])}"
                for _ in range(rng.randint(3, 6))]
    if ext == "csv":
        return ["id,item,value"] + [f"{i},{pick(rng, ['alpha', 'beta', 'gamma', 'delta'])},{rng.randint(1, 999)}"
                                    for i in range(1, rng.randint(3, 6))]
    title = stem.rsplit("_v", 1)[0].replace("_", " ")
    return [title.upper(), f"Version {rng.randint(1, 4)}.{rng.randint(0, 9)}", f"Owner: {pick(rng, ['IT', 'Finance', 'HR', 'Legal'])}",
            f"Last review: 2026-0{rng.randint(1, 3)}-{rng.randint(10, 28)}", "1. Scope", "2. Responsibilities", "3. Procedure"]


def _read_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    lines = FILE_CONTENTS.get(a["path"]) or _invented_file(a["path"], rng)
    k = min(len(lines), a.get("max_lines", len(lines)))
    return {"path": a["path"], "total_lines": len(lines), "lines": lines[:k]}


def _read_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    body = "\n".join(r["lines"])
    shown, total = len(r["lines"]), r["total_lines"]
    if shown < total:
        head = c.t(f"{r['path']} has {total} lines; here are the first {shown}:",
                   f"{r['path']} ha {total} righe; ecco le prime {shown}:")
    else:
        head = c.t(f"Here is {r['path']} ({total} lines):", f"Ecco {r['path']} ({total} righe):")
    return f"{head}\n```\n{body}\n```"


read_file = ToolSpec(
    name="read_file", domain="files_databases",
    description="Read a text file from the file server.",
    parameters=obj({"path": s("Absolute file path"), "max_lines": integer("Return at most this many lines from the top", minimum=1)},
                   ["path"]),
    sample=_read_sample, result=_read_result, answer=_read_answer,
    templates=T(["Show me the contents of {path}.", "Read the first {max_lines} of {path}.", "What's in {path}?"],
                ["Mostrami il contenuto di {path}.", "Leggi le prime {max_lines} di {path}.", "Cosa c'è in {path}?"]),
    missing=[Missing("path", T(["Read me the first {max_lines} of the file."], ["Leggimi le prime {max_lines} del file."]),
                     {"en": "Which file? Please give me its full path.", "it": "Quale file? Dammi il percorso completo."})],
)

SQL = {  # database: [(query, columns, row maker)]
    "sales": [("SELECT city, SUM(total) AS revenue FROM orders GROUP BY city ORDER BY revenue DESC",
               ["city", "revenue"], lambda rng: [[cty, round(rng.uniform(5000, 90000), 2)] for cty in rng.sample(
                   ["Milano", "Roma", "Torino", "Napoli", "Bologna"], 3)]),
              ("SELECT status, COUNT(*) AS orders FROM orders GROUP BY status",
               ["status", "orders"], lambda rng: [[st, rng.randint(3, 400)] for st in ["shipped", "processing", "cancelled"]])],
    "hr": [("SELECT department, COUNT(*) AS employees FROM employees GROUP BY department",
            ["department", "employees"], lambda rng: [[d, rng.randint(3, 60)] for d in ["Engineering", "Sales", "Finance"]]),
           ("SELECT name, hired_on FROM employees WHERE hired_on >= '2025-01-01' ORDER BY hired_on",
            ["name", "hired_on"], lambda rng: [["Luca Ferrari", "2025-02-03"], ["Hannah Reed", "2025-06-16"]])],
    "inventory": [("SELECT sku, quantity FROM stock WHERE quantity < 10 ORDER BY quantity",
                   ["sku", "quantity"], lambda rng: sorted(([f"SKU-{rng.randint(1000, 9999)}", rng.randint(0, 9)] for _ in range(3)),
                                                           key=lambda row: row[1]))],
}


def _db_sample(c: Ctx) -> dict[str, Val]:
    db = pick(c.rng, list(SQL))
    n = c.rng.choice([5, 10, 50])
    return {"database": Val(db), "sql": Val(pick(c.rng, SQL[db])[0]), "limit": Val(n, L(f"{n} rows", f"{n} righe"))}


def _db_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    for query, cols, make in SQL.get(a["database"], []):
        if query == a["sql"]:
            rows = make(rng)[: a.get("limit", 1000)]
            return {"columns": cols, "rows": rows, "row_count": len(rows)}
    return {"columns": ["result"], "rows": [[rng.randint(0, 500)]], "row_count": 1}


def _cell(x: Any, lang: str) -> str:
    return num(x, lang) if isinstance(x, (int, float)) else str(x)


def _db_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    lines = "\n".join("- " + ", ".join(f"{col}: {_cell(v, c.lang)}" for col, v in zip(r["columns"], row)) for row in r["rows"])
    n = r["row_count"]
    return c.t(f"The query returned {n} row{'s' if n != 1 else ''}:\n{lines}", f"La query ha restituito {n} rig{'he' if n != 1 else 'a'}:\n{lines}")


query_database = ToolSpec(
    name="query_database", domain="files_databases",
    description="Run a read-only SQL query on one of the company databases.",
    parameters=obj({"database": enum("Database name", list(SQL)), "sql": s("A single SELECT statement"),
                    "limit": integer("Maximum rows to return", minimum=1, maximum=1000, default=100)}, ["database", "sql"]),
    sample=_db_sample, result=_db_result, answer=_db_answer,
    templates=T(["Run this query on the {database} database: {sql}", "On {database}, execute `{sql}` and return at most {limit}.",
                 "Query the {database} DB with: {sql}"],
                ["Esegui questa query sul database {database}: {sql}", "Su {database}, esegui `{sql}` e restituisci al massimo {limit}.",
                 "Interroga il DB {database} con: {sql}"]),
    missing=[Missing("database", T(["Run this query: {sql}"], ["Esegui questa query: {sql}"]),
                     {"en": "Which database should I run it on: sales, hr or inventory?",
                      "it": "Su quale database devo eseguirla: sales, hr o inventory?"})],
)
DOC_QUERIES = [L("budget 2026", "budget 2026"), L("supplier contract", "contratto fornitore"),
               L("security policy", "policy di sicurezza"), L("onboarding checklist", "checklist di onboarding")]
FILE_TYPES = {"pdf": "PDF", "docx": "Word", "xlsx": "Excel"}


def _docs_sample(c: Ctx) -> dict[str, Val]:
    q = pick(c.rng, DOC_QUERIES)
    ft = pick(c.rng, list(FILE_TYPES))
    return {"query": Val(q, q), "file_type": Val(ft, FILE_TYPES[ft]),
            "modified_after": date_val(c.rng, c.today, at=c.today - timedelta(days=c.rng.randint(10, 120)))}


def _docs_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    docs = []
    for _ in range(rng.randint(1, 3)):
        ft = a.get("file_type") or pick(rng, list(FILE_TYPES))
        stem = a["query"].replace(" ", "_").lower()
        name = f"{stem}_v{rng.randint(1, 4)}.{ft}"
        docs.append({"title": name, "path": f"/shared/docs/{name}",
                     "modified": f"2026-{rng.randint(1, 3):02d}-{rng.randint(1, 28):02d}"})
    return {"query": a["query"], "documents": docs}


def _docs_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    lines = "\n".join(f"- {d['path']} ({c.t('modified', 'modificato')} {dp(d['modified'], c.lang)})" for d in r["documents"])
    n = len(r["documents"])
    return c.t(f"I found {n} document{'s' if n > 1 else ''} about \"{r['query']}\":\n{lines}",
               f"Ho trovato {n} document{'i' if n > 1 else 'o'} su \"{r['query']}\":\n{lines}")


search_documents = ToolSpec(
    name="search_documents", domain="files_databases",
    description="Full-text search in the shared document archive.",
    parameters=obj({"query": s("Keywords"), "file_type": enum("Only this kind of file", list(FILE_TYPES)),
                    "modified_after": date_param("Only documents changed after this day")}, ["query"]),
    sample=_docs_sample, result=_docs_result, answer=_docs_answer,
    templates=T(["Find documents about \"{query}\".", "Search for {file_type} files about \"{query}\" modified {modified_after:after}.",
                 "Look for \"{query}\" documents changed {modified_after:after}."],
                ["Trova i documenti su \"{query}\".", "Cerca file {file_type} su \"{query}\" modificati {modified_after:after}.",
                 "Cerca documenti relativi a \"{query}\" modificati {modified_after:after}."]),
    missing=[Missing("query", T(["Search the documents modified {modified_after:after}."],
                                ["Cerca tra i documenti modificati {modified_after:after}."]),
                     {"en": "What should I search for? Give me a few keywords.", "it": "Cosa devo cercare? Dammi qualche parola chiave."})],
)

# ==== communication ===============================================================================
EMAILS = {"en": [("Meeting moved", "The meeting is moved to Thursday at 10."), ("Invoice", "Please find the invoice attached."),
                 ("Project update", "The release is on track for next week."), ("Welcome", "Welcome to the team, see you on Monday!")],
          "it": [("Riunione spostata", "La riunione è spostata a giovedì alle 10."), ("Fattura", "In allegato trovi la fattura."),
                 ("Aggiornamento progetto", "Il rilascio è confermato per la prossima settimana."),
                 ("Benvenuto", "Benvenuto nel team, ci vediamo lunedì!")]}


def _addresses(c: Ctx, k: int) -> Val:
    seen: list[str] = []
    while len(seen) < k:
        e = person(c.rng, c.lang)[1]
        if e not in seen:
            seen.append(e)
    return Val(seen, L(join(seen, "en"), join(seen, "it")))


def _email_sample(c: Ctx) -> dict[str, Val]:
    subject, body = pick(c.rng, EMAILS[c.lang])
    return {"to": _addresses(c, c.rng.choice([1, 1, 2])), "subject": Val(subject), "body": Val(body), "cc": _addresses(c, 1)}


def _email_answer(c: Ctx, a: dict[str, Any], r: dict[str, Any]) -> str:
    to = join(a["to"], c.lang)
    return c.pick([f"Sent: \"{a['subject']}\" is on its way to {to}.", f"Done, I emailed {to} (subject \"{a['subject']}\")."],
                  [f"Inviata: la mail \"{a['subject']}\" è partita verso {to}.", f"Fatto, ho scritto a {to} (oggetto \"{a['subject']}\")."])


send_email = ToolSpec(
    name="send_email", domain="communication",
    description="Send an e-mail from the user's account.",
    parameters=obj({"to": array("Recipients", {"type": "string", "format": "email"}, minItems=1), "subject": s("Subject line"),
                    "body": s("Plain-text body"), "cc": array("Carbon-copy recipients", {"type": "string", "format": "email"})},
                   ["to", "subject", "body"]),
    sample=_email_sample,
    result=lambda a, rng, lang: {"message_id": f"<{rng.getrandbits(48):012x}@mail.example.com>", "status": "sent"},
    answer=_email_answer,
    templates=T(["Email {to} with the subject \"{subject}\" and the text \"{body}\"",
                 "Send an email to {to}, cc {cc}: subject \"{subject}\", body \"{body}\"",
                 "Write to {to}: \"{body}\" (subject: {subject})"],
                ["Manda una mail a {to} con oggetto \"{subject}\" e testo \"{body}\"",
                 "Invia un'email a {to}, in copia {cc}: oggetto \"{subject}\", testo \"{body}\"",
                 "Scrivi a {to}: \"{body}\" (oggetto: {subject})"]),
    missing=[Missing("to", T(["Send an email with the subject \"{subject}\" saying \"{body}\""],
                             ["Manda una mail con oggetto \"{subject}\" e testo \"{body}\""]),
                     {"en": "Who should I send it to? Please give me the e-mail address.",
                      "it": "A chi devo mandarla? Dammi l'indirizzo email."})],
)
SMS_TEXTS = {"en": ["Running 10 minutes late, sorry!", "The package is at the front desk.", "Call me when you can."],
             "it": ["Arrivo con 10 minuti di ritardo, scusa!", "Il pacco è alla reception.", "Chiamami quando puoi."]}


def _phone(c: Ctx) -> Val:
    if c.rng.random() < 0.8:
        d = f"3{c.rng.randint(20, 93)}{c.rng.randint(1000000, 9999999)}"
        return Val(f"+39{d}", f"+39 {d[:3]} {d[3:6]} {d[6:]}")
    d = f"7700{c.rng.randint(900000, 900999)}"
    return Val(f"+44{d}", f"+44 {d[:4]} {d[4:]}")


sms_tool = ToolSpec(
    name="send_sms", domain="communication",
    description="Send a text message to a mobile phone.",
    parameters=obj({"phone_number": s("Number in E.164 format without spaces, e.g. +393471234567", pattern="^\\+[1-9][0-9]{7,14}$"),
                    "message": s("Text of the message", maxLength=480)}, ["phone_number", "message"]),
    sample=lambda c: {"phone_number": _phone(c), "message": Val(pick(c.rng, SMS_TEXTS[c.lang]))},
    result=lambda a, rng, lang: {"sms_id": f"SMS-{rng.randint(100000, 999999)}", "status": "queued",
                                 "segments": 1 + len(a["message"]) // 160},
    answer=lambda c, a, r: c.t(f"Your message to {a['phone_number']} is queued for delivery (ID {r['sms_id']}).",
                               f"Il messaggio per {a['phone_number']} è in coda per l'invio (ID {r['sms_id']})."),
    templates=T(["Text {phone_number}: \"{message}\"", "Send an SMS to {phone_number} saying \"{message}\"",
                 "Can you message {phone_number} with \"{message}\"?"],
                ["Manda un SMS al {phone_number}: \"{message}\"", "Invia un messaggio al numero {phone_number} con scritto \"{message}\"",
                 "Puoi scrivere al {phone_number} \"{message}\"?"]),
    missing=[Missing("phone_number", T(["Send a text saying \"{message}\""], ["Manda un SMS con scritto \"{message}\""]),
                     {"en": "What number should I send it to?", "it": "A quale numero devo mandarlo?"})],
)
LANG_NAMES = {"en": L("English", "inglese"), "it": L("Italian", "italiano"), "fr": L("French", "francese"),
              "de": L("German", "tedesco"), "es": L("Spanish", "spagnolo")}
LANG_FROM_IT = {"en": "dall'inglese", "it": "dall'italiano", "fr": "dal francese", "de": "dal tedesco", "es": "dallo spagnolo"}
PHRASES = [{"en": "Where is the station?", "it": "Dov'è la stazione?", "fr": "Où est la gare ?", "de": "Wo ist der Bahnhof?",
            "es": "¿Dónde está la estación?"},
           {"en": "The meeting starts at nine.", "it": "La riunione inizia alle nove.", "fr": "La réunion commence à neuf heures.",
            "de": "Die Besprechung beginnt um neun.", "es": "La reunión empieza a las nueve."},
           {"en": "Thank you for your help.", "it": "Grazie per il tuo aiuto.", "fr": "Merci pour ton aide.",
            "de": "Danke für deine Hilfe.", "es": "Gracias por tu ayuda."},
           {"en": "The invoice is attached.", "it": "La fattura è in allegato.", "fr": "La facture est en pièce jointe.",
            "de": "Die Rechnung ist angehängt.", "es": "La factura está adjunta."}]


def _lang_val(code: str) -> Val:
    return Val(code, LANG_NAMES[code], {"from": L(f"from {LANG_NAMES[code].en}", LANG_FROM_IT[code])})


def _translate_sample(c: Ctx) -> dict[str, Val]:
    phrase = pick(c.rng, PHRASES)
    src = c.lang if c.rng.random() < 0.6 else pick(c.rng, ["en", "it", "fr", "de", "es"])
    dst = pick(c.rng, [k for k in LANG_NAMES if k != src])
    return {"text": Val(phrase[src]), "target_language": _lang_val(dst), "source_language": _lang_val(src)}


def _translate_result(a: dict[str, Any], rng: random.Random, lang: str) -> dict[str, Any]:
    for phrase in PHRASES:
        for code, text in phrase.items():
            if text == a["text"]:
                return {"translated_text": phrase[a["target_language"]], "detected_source_language": code,
                        "target_language": a["target_language"]}
    return {"translated_text": a["text"], "detected_source_language": a.get("source_language", "en"),
            "target_language": a["target_language"]}


translate_text = ToolSpec(
    name="translate_text", domain="communication",
    description="Translate a short text between English, Italian, French, German and Spanish.",
    parameters=obj({"text": s("Text to translate"), "target_language": enum("ISO 639-1 code of the target language", list(LANG_NAMES)),
                    "source_language": enum("ISO 639-1 code of the source language; detected when omitted", list(LANG_NAMES))},
                   ["text", "target_language"]),
    sample=_translate_sample, result=_translate_result,
    answer=lambda c, a, r: c.t(f"In {LANG_NAMES[r['target_language']].en}: \"{r['translated_text']}\"",
                               f"In {LANG_NAMES[r['target_language']].it}: \"{r['translated_text']}\""),
    templates=T(["Translate \"{text}\" into {target_language}.", "How do you say \"{text}\" in {target_language}?",
                 "Translate this sentence {source_language:from} into {target_language}: \"{text}\""],
                ["Traduci \"{text}\" in {target_language}.", "Come si dice \"{text}\" in {target_language}?",
                 "Traduci questa frase {source_language:from} in {target_language}: \"{text}\""]),
    missing=[Missing("target_language", T(["Translate \"{text}\", please."], ["Traduci \"{text}\", per favore."]),
                     {"en": "Into which language should I translate it?", "it": "In quale lingua devo tradurlo?"})],
)
CHANNELS = ["#ops", "#security-alerts", "#team-milano", "#general", "#releases"]
SLACK_TEXTS = {"en": ["Deploy finished, all green.", "The VPN will be down tonight from 22:00 to 23:00.", "Stand-up moved to 10:30."],
               "it": ["Deploy completato, tutto ok.", "Stasera la VPN sarà giù dalle 22:00 alle 23:00.", "Lo stand-up è spostato alle 10:30."]}


slack_tool = ToolSpec(
    name="post_slack_message", domain="communication",
    description="Post a message in a Slack channel.",
    parameters=obj({"channel": s("Channel name with the leading #", pattern="^#[a-z0-9-]+$"), "text": s("Message text"),
                    "urgent": boolean("Mention @channel so everyone is notified", False)}, ["channel", "text"]),
    sample=lambda c: {"channel": Val(pick(c.rng, CHANNELS)), "text": Val(pick(c.rng, SLACK_TEXTS[c.lang])),
                      "urgent": Val(True, L("marked as urgent", "segnalato come urgente"))},
    result=lambda a, rng, lang: {"ok": True, "channel": a["channel"], "ts": f"17{rng.randint(10**7, 10**8 - 1)}.{rng.randint(100000, 999999)}"},
    answer=lambda c, a, r: c.t(f"Posted in {a['channel']}{' with an @channel mention' if a.get('urgent') else ''}.",
                               f"Pubblicato su {a['channel']}{' con menzione @channel' if a.get('urgent') else ''}."),
    templates=T(["Post \"{text}\" in {channel}.", "Send a message to the {channel} channel: \"{text}\"",
                 "Post in {channel}, {urgent}: \"{text}\""],
                ["Pubblica \"{text}\" su {channel}.", "Manda un messaggio nel canale {channel}: \"{text}\"",
                 "Scrivi su {channel}, {urgent}: \"{text}\""]),
    missing=[Missing("channel", T(["Post \"{text}\" on Slack."], ["Pubblica \"{text}\" su Slack."]),
                     {"en": "Which channel should I post it in?", "it": "In quale canale devo pubblicarlo?"})],
)

# ==== productivity ================================================================================
TASK_TITLES = {"en": ["Prepare the quarterly report", "Renew the SSL certificate", "Review the supplier contract",
                      "Update the onboarding guide", "Patch the VPN gateway"],
               "it": ["Preparare il report trimestrale", "Rinnovare il certificato SSL", "Rivedere il contratto del fornitore",
                      "Aggiornare la guida di onboarding", "Applicare la patch al gateway VPN"]}
PRIORITIES = {"low": L("low", "bassa"), "medium": L("medium", "media"), "high": L("high", "alta")}


def _task_sample(c: Ctx) -> dict[str, Val]:
    return {"title": Val(pick(c.rng, TASK_TITLES[c.lang])), "due_date": date_val(c.rng, c.today, 1, 30, relative=True),
            "priority": choice_val(c.rng, {"high": PRIORITIES["high"], "low": PRIORITIES["low"]}),
            "assignee": Val(person(c.rng, c.lang)[1])}


create_task = ToolSpec(
    name="create_task", domain="productivity",
    description="Create a task in the team's task tracker.",
    parameters=obj({"title": s("Short task title"), "due_date": date_param("Deadline"),
                    "priority": enum("Priority", list(PRIORITIES), default="medium"),
                    "assignee": s("E-mail of the person responsible; the requester when omitted", format="email")},
                   ["title", "due_date"]),
    sample=_task_sample,
    result=lambda a, rng, lang: {"task_id": f"TASK-{rng.randint(1000, 9999)}", "status": "open",
                                 "priority": a.get("priority", "medium"), "due_date": a["due_date"]},
    answer=lambda c, a, r: c.t(f"Task {r['task_id']} \"{a['title']}\" created, due {dp(r['due_date'], 'en')}, "
                               f"{PRIORITIES[r['priority']].en} priority.",
                               f"Ho creato il task {r['task_id']} \"{a['title']}\", scadenza {dp(r['due_date'], 'it')}, "
                               f"priorità {PRIORITIES[r['priority']].it}."),
    templates=T(["Create a task \"{title}\" due {due_date:bare}.",
                 "Add a {priority} priority task \"{title}\" for {due_date:bare}, assigned to {assignee}.",
                 "New task: \"{title}\", deadline {due_date:bare}, priority {priority}."],
                ["Crea un task \"{title}\" con scadenza {due_date}.",
                 "Aggiungi un task a priorità {priority} \"{title}\" per {due_date}, assegnato a {assignee}.",
                 "Nuovo task: \"{title}\", scadenza {due_date:bare}, priorità {priority}."]),
    missing=[Missing("due_date", T(["Create a task \"{title}\"."], ["Crea un task \"{title}\"."]),
                     {"en": "When is it due?", "it": "Per quando è la scadenza?"})],
)
TICKET_STATES = {"open": L("open", "aperto"), "in_progress": L("in progress", "in lavorazione"),
                 "resolved": L("resolved", "risolto"), "closed": L("closed", "chiuso")}
COMMENTS = {"en": ["Fixed in release 2.4.1.", "Waiting for the customer's reply.", "Duplicate of an older ticket."],
            "it": ["Risolto nella release 2.4.1.", "In attesa di risposta dal cliente.", "Duplicato di un ticket precedente."]}

update_ticket_status = ToolSpec(
    name="update_ticket_status", domain="productivity",
    description="Change the status of a help-desk or issue-tracker ticket.",
    parameters=obj({"ticket_id": s("Ticket key, e.g. OPS-2291", pattern="^[A-Z]{2,6}-[0-9]{1,5}$"),
                    "status": enum("New status", list(TICKET_STATES)), "comment": s("Comment to add to the ticket")},
                   ["ticket_id", "status"]),
    sample=lambda c: {"ticket_id": Val(f"{pick(c.rng, ['SEC', 'OPS', 'HELP', 'IT'])}-{c.rng.randint(10, 4999)}"),
                      "status": choice_val(c.rng, TICKET_STATES), "comment": Val(pick(c.rng, COMMENTS[c.lang]))},
    result=lambda a, rng, lang: {"ticket_id": a["ticket_id"], "status": a["status"], "previous_status": pick(
        rng, [k for k in TICKET_STATES if k != a["status"]]), "comment_added": "comment" in a},
    answer=lambda c, a, r: c.t(f"{r['ticket_id']} moved from {TICKET_STATES[r['previous_status']].en} to {TICKET_STATES[r['status']].en}"
                               f"{' and your comment was added' if r['comment_added'] else ''}.",
                               f"{r['ticket_id']} è passato da {TICKET_STATES[r['previous_status']].it} a {TICKET_STATES[r['status']].it}"
                               f"{' e ho aggiunto il tuo commento' if r['comment_added'] else ''}."),
    templates=T(["Mark ticket {ticket_id} as {status}.", "Set {ticket_id} to {status} with the comment \"{comment}\"",
                 "Move {ticket_id} to {status}."],
                ["Segna il ticket {ticket_id} come {status}.", "Imposta {ticket_id} su {status} con il commento \"{comment}\"",
                 "Sposta {ticket_id} nello stato {status}."]),
    missing=[Missing("status", T(["Update ticket {ticket_id}."], ["Aggiorna il ticket {ticket_id}."]),
                     {"en": "What status should I set: open, in progress, resolved or closed?",
                      "it": "Che stato devo impostare: aperto, in lavorazione, risolto o chiuso?"})],
)
REMINDERS = {"en": ["call the dentist", "pay the electricity bill", "pick up the kids", "send the timesheet"],
             "it": ["chiamare il dentista", "pagare la bolletta della luce", "prendere i bambini", "mandare il timesheet"]}

set_reminder = ToolSpec(
    name="set_reminder", domain="productivity",
    description="Set a personal reminder at a given day and time.",
    parameters=obj({"text": s("What to remind"), "date": date_param("Day of the reminder"), "time": time_param("Time of the reminder")},
                   ["text", "date", "time"]),
    sample=lambda c: {"text": Val(pick(c.rng, REMINDERS[c.lang])), "date": date_val(c.rng, c.today, 1, 20, relative=True),
                      "time": time_val(c.rng, 7, 20)},
    result=lambda a, rng, lang: {"reminder_id": f"REM-{rng.randint(10000, 99999)}", "fires_at": f"{a['date']}T{a['time']}"},
    answer=lambda c, a, r: c.t(f"OK, I'll remind you to {a['text']} on {dp(a['date'], 'en')} at {a['time']}.",
                               f"Va bene, ti ricorderò di {a['text']} {dp(a['date'], 'it')} alle {a['time']}."),
    templates=T(["Remind me to {text} {date} {time}.", "Set a reminder {date} {time}: {text}.", "Can you remind me {date} {time} to {text}?"],
                ["Ricordami di {text} {date} {time}.", "Imposta un promemoria per {date} {time}: {text}.",
                 "Mi ricordi {date} {time} di {text}?"]),
    missing=[Missing("time", T(["Remind me to {text} {date}."], ["Ricordami di {text} {date}."]),
                     {"en": "What time should I remind you?", "it": "A che ora devo ricordartelo?"})],
)
WORK_NOTES = {"en": ["code review", "client workshop", "bug fixing", "documentation"],
              "it": ["code review", "workshop con il cliente", "correzione di bug", "documentazione"]}


def _hours_val(h: float) -> Val:
    return Val(h, L(f"{num(h, 'en', 1 if h % 1 else 0)} hour{'s' if h != 1 else ''}",
                    f"{num(h, 'it', 1 if h % 1 else 0)} or{'e' if h != 1 else 'a'}"))


log_work_hours = ToolSpec(
    name="log_work_hours", domain="productivity",
    description="Record worked hours on a project timesheet.",
    parameters=obj({"project_code": s("Project code, e.g. PRJ-104", pattern="^PRJ-[0-9]{3}$"), "date": date_param("Day worked"),
                    "hours": number("Hours, in steps of 0.25", minimum=0.25, maximum=24, multipleOf=0.25),
                    "description": s("What was done")}, ["project_code", "date", "hours"]),
    sample=lambda c: {"project_code": Val(f"PRJ-{c.rng.randint(100, 999)}"),
                      "date": date_val(c.rng, c.today, at=c.today - timedelta(days=c.rng.randint(1, 6))),
                      "hours": _hours_val(c.rng.choice([1, 2, 2.5, 3.5, 4, 6, 7.5, 8])),
                      "description": Val(pick(c.rng, WORK_NOTES[c.lang]))},
    result=lambda a, rng, lang: {"entry_id": f"TS-{rng.randint(10000, 99999)}", "week_total_hours": round(a["hours"] + rng.choice([0, 8, 16, 24.5]), 2)},
    answer=lambda c, a, r: c.t(f"Logged {_hours_val(a['hours']).text.en} on {a['project_code']} for {dp(a['date'], 'en')}; "
                               f"this week you're at {num(r['week_total_hours'], 'en')} hours.",
                               f"Registrate {_hours_val(a['hours']).text.it} su {a['project_code']} per {dp(a['date'], 'it')}; "
                               f"questa settimana sei a {num(r['week_total_hours'], 'it')} ore."),
    templates=T(["Log {hours} on {project_code} {date}.", "Record {hours} of work for project {project_code} {date}: {description}.",
                 "Add a timesheet entry: {project_code}, {date:bare}, {hours}."],
                ["Registra {hours} sul progetto {project_code} {date}.",
                 "Segna {hours} di lavoro per il progetto {project_code} {date}: {description}.",
                 "Aggiungi al timesheet: {project_code}, {date:bare}, {hours}."]),
    missing=[Missing("hours", T(["Log my time on {project_code} {date}."], ["Registra le mie ore sul progetto {project_code} {date}."]),
                     {"en": "How many hours did you work on {project_code}?", "it": "Quante ore hai lavorato su {project_code}?"})],
)

TOOLS = [check_ip_reputation, scan_ports, lookup_cve, block_ip, analyze_file_hash,
         list_files, read_file, query_database, search_documents,
         send_email, sms_tool, translate_text, slack_tool,
         create_task, update_ticket_status, set_reminder, log_work_hours]

