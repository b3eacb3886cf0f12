"""The migration this code is written for. A test keeps it equal to Alembic's head."""

HEAD_REVISION = "0019"
