from tests.channels_console.helpers import wa_sim  # noqa: F401 - the fixture, for every test here
