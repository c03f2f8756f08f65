"""PostgreSQL / TimescaleDB: schema, migrations and the writers the other rooms use."""
