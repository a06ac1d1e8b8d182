"""Request and response models of the OpenAI-compatible API. They make the generated OpenAPI spec describe the
real surface; checks that need the model or the tokenizer (tool schemas, context length) live in app.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ---- requests ------------------------------------------------------------------------------------------


class _Open(BaseModel):
    """Unknown fields are ignored, as agent frameworks send extras (``user``, ``metadata``, ...)."""

    model_config = ConfigDict(extra="ignore")


class ContentPart(_Open):
    type: str = Field(description="only 'text' parts are supported")
    text: str | None = None


Content = str | list[ContentPart]


class FunctionCall(_Open):
    name: str
    arguments: str = Field(description="the arguments as a JSON string (an object)")


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Open):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserMessage(_Open):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None
    refusal: str | None = None


class ToolMessage(_Open):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDefinition(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON schema of type 'object'")
    strict: bool | None = None


class ToolDefinition(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextFormat(_Open):
    type: Literal["text"]


class JsonObjectFormat(_Open):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(_Open):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(_Open):
    include_usage: bool | None = None


StopString = Annotated[str, Field(min_length=1, max_length=256)]
MAX_N = 8


class ChatCompletionRequest(_Open):
    model: str = Field(description="the served model's id, as listed by GET /v1/models")
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolDefinition] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="default true: several calls in one turn")
    response_format: ResponseFormat | None = None
    temperature: float | None = Field(None, ge=0, le=2, description="default 0 (greedy), unlike OpenAI's 1")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, description="deprecated by OpenAI; max_completion_tokens wins")
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: StopString | list[StopString] | None = Field(None, description="up to 16 stop strings")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="accepted and ignored")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="accepted and ignored")
    logprobs: bool | None = Field(None, description="not supported: true is rejected")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="not supported: > 0 is rejected")
    logit_bias: dict[str, float] | None = Field(None, description="not supported: a non-empty map is rejected")
    user: str | None = None
    # extensions (vLLM names them the same way)
    top_k: int | None = Field(None, ge=0, description="nesso extension: sample among the k most likely tokens")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="nesso extension (1 = off)")


class AgentChatRequest(_Open):
    """One user turn through the server-side agent loop with the shipped tools (used by the chat page)."""

    messages: list[dict[str, Any]] = Field(
        min_length=1, max_length=200,
        description="the conversation so far in chat-template form (as returned by the 'done' event), ending "
                    "with the user's turn")
    tools: list[str] | None = Field(None, description="names of shipped tools to offer (default: all)")
    tool_choice: str | None = Field(None, description="auto (default), required, none, or a tool's name")
    max_steps: int = Field(4, ge=1, le=10)
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)


# ---- responses -----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCallOut


class ChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int
    message: ChoiceMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    slots: int
    active: int
    queued: int
    admitted: int
    finished: int
    cancelled: int
    failed: int
    steps: int
    tokens: int
    peak_batch: int
    reused_prompt_tokens: int


class AgentTool(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]


class AgentTools(BaseModel):
    tools: list[AgentTool]


# ---- streamed events (documented in the spec; each SSE ``data:`` line holds one of them as JSON) -------------


class FunctionDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class AgentEvent(BaseModel):
    type: Literal["text", "call", "result", "done", "error"]
    text: str | None = Field(None, description="text: a piece of the answer")
    name: str | None = Field(None, description="call/result: the tool")
    arguments: dict[str, Any] | None = Field(None, description="call: the validated arguments")
    ok: bool | None = Field(None, description="result: whether the tool succeeded")
    result: str | None = Field(None, description="result: what the tool returned (JSON or text)")
    seconds: float | None = None
    answer: str | None = Field(None, description="done: the final answer")
    stopped: str | None = Field(None, description="done: answer, max_steps or loop")
    messages: list[dict[str, Any]] | None = Field(None, description="done: the conversation to send next time")
    error: ErrorDetail | None = None
