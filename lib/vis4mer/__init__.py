from vis4mer._logging import logger  # noqa: F401
