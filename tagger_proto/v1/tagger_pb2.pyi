from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenizedSentence(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class TokenizedDocument(_message.Message):
    __slots__ = ("sentences",)
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    sentences: _containers.RepeatedCompositeFieldContainer[TokenizedSentence]
    def __init__(self, sentences: _Optional[_Iterable[_Union[TokenizedSentence, _Mapping]]] = ...) -> None: ...

class TagRequest(_message.Message):
    __slots__ = ("id", "text", "tokens", "models", "include_scores", "tasks")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SCORES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    tokens: TokenizedDocument
    models: _containers.RepeatedScalarFieldContainer[str]
    include_scores: bool
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., tokens: _Optional[_Union[TokenizedDocument, _Mapping]] = ..., models: _Optional[_Iterable[str]] = ..., include_scores: _Optional[bool] = ..., tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("value", "score")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    value: str
    score: float
    def __init__(self, value: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("text", "start", "end", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Label
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Label, _Mapping]] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    text: str
    start: int
    end: int
    labels: _containers.MessageMap[str, Label]
    def __init__(self, text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., labels: _Optional[_Mapping[str, Label]] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("label", "start", "end", "text", "token_start", "token_end", "score", "task")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_START_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    label: str
    start: int
    end: int
    text: str
    token_start: int
    token_end: int
    score: float
    task: str
    def __init__(self, label: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., text: _Optional[str] = ..., token_start: _Optional[int] = ..., token_end: _Optional[int] = ..., score: _Optional[float] = ..., task: _Optional[str] = ...) -> None: ...

class Sentence(_message.Message):
    __slots__ = ("start", "end", "tokens", "entities")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class TagResponse(_message.Message):
    __slots__ = ("id", "sentences", "models")
    ID_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    sentences: _containers.RepeatedCompositeFieldContainer[Sentence]
    models: _containers.RepeatedCompositeFieldContainer[ModelRef]
    def __init__(self, id: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[Sentence, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("name", "kind", "labels", "test_metrics")
    class TestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    test_metrics: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., test_metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "tasks", "default", "context_weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    default: bool
    context_weight: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., default: _Optional[bool] = ..., context_weight: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "active", "tasks", "dev_score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DEV_SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    active: bool
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    dev_score: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., active: _Optional[bool] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., dev_score: _Optional[float] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class ActivateModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CorpusFormat(_message.Message):
    __slots__ = ("format", "token_column", "label_column", "scheme")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    format: str
    token_column: int
    label_column: str
    scheme: str
    def __init__(self, format: _Optional[str] = ..., token_column: _Optional[int] = ..., label_column: _Optional[str] = ..., scheme: _Optional[str] = ...) -> None: ...

class CorpusChunk(_message.Message):
    __slots__ = ("name", "format", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: CorpusFormat
    data: bytes
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[CorpusFormat, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Corpus(_message.Message):
    __slots__ = ("name", "sha256", "size", "sentences", "tokens", "kind", "labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size: int
    sentences: int
    tokens: int
    kind: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., sentences: _Optional[int] = ..., tokens: _Optional[int] = ..., kind: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("train_corpus", "dev_corpus", "model_name", "overrides", "base_model", "teachers", "search_trials", "search_time_budget_seconds")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRAIN_CORPUS_FIELD_NUMBER: _ClassVar[int]
    DEV_CORPUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEACHERS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_TRIALS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_TIME_BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    train_corpus: str
    dev_corpus: str
    model_name: str
    overrides: _containers.ScalarMap[str, str]
    base_model: str
    teachers: _containers.RepeatedScalarFieldContainer[str]
    search_trials: int
    search_time_budget_seconds: float
    def __init__(self, train_corpus: _Optional[str] = ..., dev_corpus: _Optional[str] = ..., model_name: _Optional[str] = ..., overrides: _Optional[_Mapping[str, str]] = ..., base_model: _Optional[str] = ..., teachers: _Optional[_Iterable[str]] = ..., search_trials: _Optional[int] = ..., search_time_budget_seconds: _Optional[float] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "model_name", "version", "activated", "epoch", "epochs", "step", "steps", "loss", "dev_score", "error", "created", "started", "finished", "eta_seconds", "dev_metrics", "trial", "trials")
    class DevMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    DEV_SCORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEV_METRICS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    model_name: str
    version: str
    activated: bool
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    dev_score: float
    error: str
    created: float
    started: float
    finished: float
    eta_seconds: float
    dev_metrics: _containers.ScalarMap[str, float]
    trial: int
    trials: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., model_name: _Optional[str] = ..., version: _Optional[str] = ..., activated: _Optional[bool] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., loss: _Optional[float] = ..., dev_score: _Optional[float] = ..., error: _Optional[str] = ..., created: _Optional[float] = ..., started: _Optional[float] = ..., finished: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., dev_metrics: _Optional[_Mapping[str, float]] = ..., trial: _Optional[int] = ..., trials: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job", "final")
    JOB_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    job: Job
    final: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., final: _Optional[bool] = ...) -> None: ...
