# aiosmtpd handlers for the tests (loaded with `-c aiosmtpd_handlers.NAME MAILDIR`).
import os

from aiosmtpd.handlers import Mailbox


class RefusingMailbox(Mailbox):
    """A Maildir store that knows no recipient whose local part starts with "unknown" (550 5.1.1),
    and writes every RCPT it is asked about to MAILDIR/rcpts.log, one address per line."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(os.path.join(self.mail_dir, "rcpts.log"), "a") as log:
            log.write(address + "\n")
        if address.lower().startswith("unknown"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"
