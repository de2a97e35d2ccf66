"""The chat fixtures (channels, keys, API client) by their names, from the chat tests' conftest."""

from tests.chat.conftest import api_client, api_key_a, api_key_b, channel_a, channel_b  # noqa: F401
from tests.chat.test_conversation_api import sf_conn  # noqa: F401
