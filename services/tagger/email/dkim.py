"""Optional DKIM signing of journey email (dkimpy), covering what RFC 8058 and receivers need.

The signature's `h=` lists From, To, Subject, Date, Message-ID, List-Unsubscribe and
List-Unsubscribe-Post (RFC 8058: a one-click link is honoured only when both unsubscribe
headers are signed), plus the MIME headers. The headers a forger would add are signed once more
than they occur, so a second List-Unsubscribe or From added on the way breaks the signature.
Canonicalisation is relaxed/relaxed, which survives the re-folding relays do.

Publish the public key as a TXT record at `<selector>._domainkey.<domain>`:
`v=DKIM1; k=rsa; p=<base64 of the public key>` (for instance from `openssl rsa -pubout`).
"""

from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path

import dkim

from services.common.settings import Settings
from services.tagger.email.compose import address_domain

SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)
# Listed once more in h=: a signer commits to "no further one of these".
OVERSIGNED = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")


@dataclass(frozen=True)
class DkimSigner:
    """Signs wire-form messages for one domain and selector with an RSA key (PEM)."""

    domain: str
    selector: str
    private_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        try:
            dkim.crypto.parse_pem_private_key(self.private_key)
        except (dkim.crypto.UnparsableKeyError, ValueError) as exc:
            raise ValueError(f"the DKIM key is not an RSA private key in PEM: {exc}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> "DkimSigner | None":
        """The configured signer, or None when DKIM is not configured."""
        if not (settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key_path):
            return None
        key = Path(settings.dkim_private_key_path).read_bytes()
        return cls(settings.dkim_domain.lower(), settings.dkim_selector, key)

    def sign(self, raw: bytes) -> bytes:
        """The message with a DKIM-Signature header in front; send exactly these bytes."""
        headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        senders = getaddresses([str(value) for value in headers.get_all("From", [])])
        if len(senders) != 1:
            raise ValueError("a message to sign needs exactly one From address")
        from_domain = address_domain(senders[0][1])
        # DMARC passes only when the signing domain is the From domain or one of its parents.
        if from_domain != self.domain and not from_domain.endswith("." + self.domain):
            raise ValueError(
                f"the From domain {from_domain} is not under the DKIM domain {self.domain}"
            )
        include = [*SIGNED_HEADERS, *OVERSIGNED]
        signature: bytes = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=[name.encode() for name in include],
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return signature + raw
