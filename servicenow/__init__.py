"""The ServiceNow domain by table (change_request, incident, cmdb) beside a generic async Table API client, the
encoded-query builder, authentication and typed errors. Knows nothing of Temporal: `activities/` translates these
errors into retry semantics.

Import what you use from its module (`servicenow.client`, `servicenow.query`, ...): this package's `__init__` stays
empty so that workflow code may import the pure modules (states, records, errors) without pulling httpx in.
"""
