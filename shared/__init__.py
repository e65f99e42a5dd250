"""Perisai's shared package: the message contract (schemas, topics) and the common
infrastructure every service stands on (settings, database pool, migrations, outbox,
inbox, Kafka helpers)."""
