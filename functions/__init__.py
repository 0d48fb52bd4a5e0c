"""Azure Functions blueprints: a trigger reads its binding, calls a service, shapes the result."""
