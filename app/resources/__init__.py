"""HTTP resources: thin nouns that parse, call a service and render."""
