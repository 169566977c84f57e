"""The ServiceNow domain: async Table API client, encoded-query builder, record models, state maps.

Knows nothing of Temporal: `activities/` translates these errors into retry semantics.
"""

from servicenow.auth import Auth, BasicAuth, OAuth
from servicenow.client import ServiceNowClient
from servicenow.errors import (
    BadRequest,
    Forbidden,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
    ServiceNowError,
    TransportError,
)
from servicenow.query import Query, QueryValueError

__all__ = [
    "Auth",
    "BadRequest",
    "BasicAuth",
    "Forbidden",
    "NotAuthenticated",
    "NotFound",
    "OAuth",
    "Query",
    "QueryValueError",
    "RateLimited",
    "ServerError",
    "ServiceNowClient",
    "ServiceNowError",
    "TransportError",
]
