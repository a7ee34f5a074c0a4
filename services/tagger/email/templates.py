"""Journey email templates: a subject, a plain-text part and an HTML part per step, in Jinja2.

The shipped templates are files beside this module (`templates/<journey>/<step>.txt` starts
with a `Subject:` line, `.html` is a fragment), one per step of the three shipped journeys.
A merchant's own templates come as data (`TemplateSource`: a subject, an HTML body and an
optional text body, whose absence makes the text part from the HTML) and render the same way.
Both are rendered in Jinja2's immutable sandbox (`ImmutableSandboxedEnvironment`: no attribute
starting with `_`, no Python internals, no changing lists or dicts, `range` bounded, and here
`*` and `**` bounded too, so `{{ 'x' * 10**9 }}` is refused instead of filling memory), the
HTML part with autoescaping, undefined variables an error; every body is then put in a layout
(`templates/layout.txt` / `layout.html`) that always shows the unsubscribe link, so no
template can leave it out and none needs `{{ unsubscribe_url }}`. Of Jinja's globals only
`range` is left; filters and tests (`| upper`, `is defined`) work as usual.

Variables: `first_name` (FIRST_NAME_FALLBACK when unknown), `shop_name`, `unsubscribe_url`,
and, only when known, `coupon_code` and `top_product_type` (guard them with `| default(...)`
or `is defined`; a step that needs a coupon fails clearly without one).
"""

import re
import sys
import unicodedata
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from types import TracebackType
from typing import Any

import jinja2
import jinja2.meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from markupsafe import Markup

from services.tagger.email.plaintext import html_to_text

FIRST_NAME_FALLBACK = "there"
VARIABLES = ("first_name", "shop_name", "unsubscribe_url", "coupon_code", "top_product_type")
# A template (one part) larger than this is refused before it is compiled.
MAX_SOURCE_CHARS = 100_000
# The steps of the journeys segflow ships (journey handle / step), in order.
SHIPPED_KEYS = (
    "welcome/1",  # welcome, within the hour
    "welcome/2",  # day 3: what customers love (product intro)
    "welcome/3",  # day 7: first-order coupon
    "welcome/4",  # day 14: guide
    "vip-care/offer",  # at entry: exclusive offer
    "vip-care/birthday",  # in the birthday month
    "win-back/1",  # we miss you
    "win-back/2",  # return offer
    "win-back/3",  # new arrivals
    "win-back/4",  # survey
)
# The template keys journeys name (the shipped journeys' JSON) and the files they render.
SHIPPED_TEMPLATE_FILES = {
    "welcome.hello": "welcome/1",
    "welcome.product-intro": "welcome/2",
    "welcome.first-order-coupon": "welcome/3",
    "welcome.guide": "welcome/4",
    "vip-care.exclusive-offer": "vip-care/offer",
    "vip-care.birthday-offer": "vip-care/birthday",
    "win-back.we-miss-you": "win-back/1",
    "win-back.return-offer": "win-back/2",
    "win-back.new-arrivals": "win-back/3",
    "win-back.survey": "win-back/4",
}
_SUBJECT_PREFIX = "Subject:"
_COMPILED_LIMIT = 512
# The largest string or list `*` may make, and the largest exponent of `**`, in a template.
_MAX_PRODUCT = 10_000
_MAX_EXPONENT = 64


# Elements whose content is raw text up to their end tag, so an unclosed one hides what follows.
_RAW_TEXT = (
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "noscript",
)


def unclosed_markup(html: str) -> str | None:
    """What this HTML leaves open that would hide the markup after it (a comment, a raw-text
    element, <plaintext>), or None."""
    lowered = html.lower()
    opened = lowered.rfind("<!--")
    if opened >= 0 and lowered.find("-->", opened + 4) < 0:
        return "a comment (<!--) is not closed (-->)"
    if re.search(r"<plaintext\b", lowered):
        return "<plaintext> is not allowed (nothing after it is markup)"
    for tag in _RAW_TEXT:
        for match in re.finditer(rf"<{tag}\b", lowered):
            if lowered.find(f"</{tag}", match.end()) < 0:
                return f"<{tag}> is not closed (</{tag}>)"
    return None


class TemplateError(ValueError):
    """A template that cannot be rendered; the message names the template, part and problem
    (`part` is subject, text or html when one part is at fault)."""

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message)
        self.part = part


# Work one render may do: loop steps over `range` in all (nesting multiplies them) and
# characters of output. A merchant's template is checked on the event loop and rendered for
# every send, so neither its time nor its memory may be unbounded.
MAX_RANGE_STEPS = 10_000
MAX_OUTPUT_CHARS = 512 * 1024
_steps: ContextVar[list[int] | None] = ContextVar("template_range_steps", default=None)


def _counted_range(*args: int) -> Iterator[int]:
    """range() whose steps count against the render's MAX_RANGE_STEPS."""
    budget = _steps.get()
    for number in safe_range(*args):  # the sandbox's own bound on one range's size first
        if budget is not None:
            budget[0] += 1
            if budget[0] > MAX_RANGE_STEPS:
                raise SecurityError(f"more than {MAX_RANGE_STEPS} loop steps in one email")
        yield number


def _bounded_render(template: jinja2.Template, values: dict[str, str]) -> str:
    """Render with the step budget, stopping once the output passes MAX_OUTPUT_CHARS."""
    token = _steps.set([0])
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"renders longer than {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _steps.reset(token)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with `*` and `**` bounded: a template cannot make a huge
    string or number (the sandbox already bounds `range`)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"an exponent above {_MAX_EXPONENT} is not allowed")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if (
                    isinstance(sized, str | list | tuple)
                    and isinstance(count, int)
                    and len(sized) * count > _MAX_PRODUCT
                ):
                    raise SecurityError(f"a repetition longer than {_MAX_PRODUCT} is not allowed")
        return super().call_binop(context, operator, left, right)


@dataclass(frozen=True)
class TemplateSource:
    """One step's template as text: what the shipped files hold and what a merchant edits.
    Without `text` the plain-text part is the HTML part's text (plaintext.html_to_text)."""

    subject: str
    text: str | None
    html: str


@dataclass(frozen=True)
class EmailContext:
    """What a template may show about one customer and shop."""

    shop_name: str
    unsubscribe_url: str
    first_name: str | None = None
    coupon_code: str | None = None
    top_product_type: str | None = None

    def variables(self) -> dict[str, str]:
        """The template variables: customer data on one line, unknown optional ones absent."""
        values = {
            "shop_name": _one_line(self.shop_name),
            "unsubscribe_url": self.unsubscribe_url,
            "first_name": _one_line(self.first_name or "") or FIRST_NAME_FALLBACK,
        }
        for name in ("coupon_code", "top_product_type"):
            value = _one_line(getattr(self, name) or "")
            if value:
                values[name] = value
        return values


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _one_line(value: str) -> str:
    # Names come from customers: no line breaks or control characters reach a header or body.
    kept = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    return " ".join(kept.split())


def _template_line(traceback: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so a template's own frames carry its line numbers.
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _read_shipped(key: str) -> TemplateSource:
    journey, _, step = key.partition("/")
    folder = resources.files(__package__ or __name__).joinpath("templates", journey)
    text_file = folder.joinpath(f"{step}.txt").read_text("utf-8")
    first, _, body = text_file.partition("\n")
    if not first.startswith(_SUBJECT_PREFIX):
        raise TemplateError(f"{key}: the .txt file must start with a 'Subject:' line")
    html = folder.joinpath(f"{step}.html").read_text("utf-8")
    return TemplateSource(first[len(_SUBJECT_PREFIX) :].strip(), body.lstrip("\n"), html)


class EmailTemplates:
    """Renders the shipped templates and merchants' own, sandboxed; compiled ones are kept."""

    def __init__(self) -> None:
        options: dict[str, Any] = {
            "undefined": jinja2.StrictUndefined,
            "keep_trailing_newline": True,
        }
        self._text = _Sandbox(autoescape=False, **options)
        self._html = _Sandbox(autoescape=True, **options)
        for environment in (self._text, self._html):
            # Only the documented variables (and `range`): Jinja's other globals (cycler,
            # joiner, namespace, lipsum, dict) are objects a template has no use for here.
            environment.globals = {"range": _counted_range}
        self._compiled: dict[tuple[bool, str], jinja2.Template] = {}
        folder = resources.files(__package__ or __name__).joinpath("templates")
        self._layout_text = self._text.from_string(folder.joinpath("layout.txt").read_text("utf-8"))
        self._layout_html = self._html.from_string(
            folder.joinpath("layout.html").read_text("utf-8")
        )
        self._shipped: dict[str, TemplateSource] = {}

    def shipped(self, key: str) -> TemplateSource:
        """The shipped template of a step, e.g. `welcome/1`; KeyError for an unknown key."""
        if key not in SHIPPED_KEYS:
            raise KeyError(f"no shipped template {key!r}; there are {', '.join(SHIPPED_KEYS)}")
        if key not in self._shipped:
            self._shipped[key] = _read_shipped(key)
        return self._shipped[key]

    def render(self, key: str, context: EmailContext) -> RenderedEmail:
        """Render a shipped template; TemplateError when it cannot be."""
        return self.render_source(self.shipped(key), context, name=key)

    def render_source(
        self, source: TemplateSource, context: EmailContext, *, name: str = "template"
    ) -> RenderedEmail:
        """Render a template given as data; TemplateError naming the part and the problem."""
        values = context.variables()
        subject = _one_line(self._render(False, source.subject, values, name, "subject"))
        if not subject:
            raise TemplateError(f"{name} subject: renders empty", "subject")
        text = None
        if source.text is not None:
            text = self._render(False, source.text, values, name, "text").strip("\n")
        html = self._render(True, source.html, values, name, "html")
        if text is None:
            text = html_to_text(html)
        return RenderedEmail(
            subject=subject,
            text=self._layout_text.render(values, body=text),
            html=self._layout_html.render(values, subject=subject, body=Markup(html)),
        )

    def check(self, source: TemplateSource, *, name: str = "template") -> None:
        """Refuse a template a merchant submits that names unknown variables or cannot render."""
        for part, is_html, text in (
            ("subject", False, source.subject),
            ("text", False, source.text),
            ("html", True, source.html),
        ):
            if text is None:
                continue
            if len(text) > MAX_SOURCE_CHARS:
                raise TemplateError(
                    f"{name} {part}: longer than {MAX_SOURCE_CHARS} characters", part
                )
            environment = self._html if is_html else self._text
            try:
                used = jinja2.meta.find_undeclared_variables(environment.parse(text))
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{name} {part}, line {exc.lineno}: {exc.message}", part
                ) from None
            unknown = sorted(used - set(VARIABLES))
            if unknown:
                raise TemplateError(
                    f"{name} {part}: unknown variable {', '.join(unknown)} "
                    f"(known: {', '.join(VARIABLES)})",
                    part,
                )
        sample = EmailContext(
            shop_name="Sample Shop",
            unsubscribe_url="https://example.com/unsubscribe/sample",
            first_name="Sam",
            coupon_code="SAMPLE10",
            top_product_type="Sample",
        )
        self.render_source(source, sample, name=name)
        html = self._render(True, source.html, sample.variables(), name, "html")
        unclosed = unclosed_markup(html)
        if unclosed is not None:
            # The layout's footer (the unsubscribe link) follows the merchant's HTML: left
            # open, a comment or a raw-text element would swallow it.
            raise TemplateError(f"{name} html: {unclosed}", "html")

    def _render(
        self, is_html: bool, source: str, values: dict[str, str], name: str, part: str
    ) -> str:
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"{name} {part}: longer than {MAX_SOURCE_CHARS} characters", part)
        try:
            template = self._compile(is_html, source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{name} {part}, line {exc.lineno}: {exc.message}", part) from None
        try:
            return _bounded_render(template, values)
        except Exception as exc:  # noqa: BLE001 - any failure of a template is the template's
            line = _template_line(sys.exc_info()[2])
            where = f"{name} {part}" + (f", line {line}" if line else "")
            if isinstance(exc, jinja2.UndefinedError):
                problem = exc.message or "undefined variable"
            else:
                problem = f"{type(exc).__name__}: {exc}"
            raise TemplateError(f"{where}: {problem}", part) from None

    def _compile(self, is_html: bool, source: str) -> jinja2.Template:
        key = (is_html, source)
        template = self._compiled.get(key)
        if template is None:
            if len(self._compiled) >= _COMPILED_LIMIT:
                self._compiled.clear()
            environment = self._html if is_html else self._text
            template = self._compiled[key] = environment.from_string(source)
        return template
