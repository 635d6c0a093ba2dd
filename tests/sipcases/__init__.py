"""SIP messages shared by unit and integration tests."""
