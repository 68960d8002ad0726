"""The science database: schema, migrations, engine and queries (the engine is always passed in)."""
