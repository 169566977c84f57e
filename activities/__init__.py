"""Every side effect: ServiceNow calls, host commands, HTTP calls, callbacks. Workflows reach these by name."""
