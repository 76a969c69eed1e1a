"""DashScope: the client for temporary storage and the try-on task API, its errors and replies."""

from services.dashscope.client import DashScopeClient, ListedTask
from services.dashscope.errors import (
    RETRYABLE,
    DashScopeError,
    ErrorKind,
    SubmitOutcomeUnknown,
    classify,
)
from services.dashscope.models import TaskState, UploadPolicy
from services.dashscope.ratelimit import SlidingWindowLimiter

__all__ = [
    "RETRYABLE",
    "DashScopeClient",
    "DashScopeError",
    "ErrorKind",
    "ListedTask",
    "SlidingWindowLimiter",
    "SubmitOutcomeUnknown",
    "TaskState",
    "UploadPolicy",
    "classify",
]
