"""Local development: embedded services, DEBUG on, console e-mail."""

from hub.settings.base import *  # noqa: F403
from hub.settings.env import env_bool

HUB_ENV = "dev"
DEBUG = env_bool("DJANGO_DEBUG", True)
