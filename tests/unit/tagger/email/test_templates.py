"""Journey email templates: the shipped ones, merchants' own, escaping, fallbacks, errors."""

import fnmatch
import tomllib
from pathlib import Path

import pytest

from services.tagger.email.templates import (
    FIRST_NAME_FALLBACK,
    SHIPPED_KEYS,
    EmailContext,
    EmailTemplates,
    TemplateError,
    TemplateSource,
)

URL = "https://tagger.example.com/unsubscribe/1.k1.12.34.unsubscribe.sig"
FULL = EmailContext(
    shop_name="Acme & Co",
    unsubscribe_url=URL,
    first_name="Ada",
    coupon_code="WELCOME10",
    top_product_type="Sneakers",
)
COUPON_STEPS = {"welcome/3", "vip-care/offer", "vip-care/birthday", "win-back/2"}
ROOT = Path(__file__).parents[4]


@pytest.fixture(scope="module")
def templates() -> EmailTemplates:
    return EmailTemplates()


def test_the_three_journeys_have_a_template_per_step() -> None:
    journeys = {key.split("/")[0] for key in SHIPPED_KEYS}
    assert journeys == {"welcome", "vip-care", "win-back"}
    assert [k for k in SHIPPED_KEYS if k.startswith("welcome/")] == [f"welcome/{n}" for n in "1234"]
    assert [k for k in SHIPPED_KEYS if k.startswith("vip-care/")] == [
        "vip-care/offer",
        "vip-care/birthday",
    ]
    assert [k for k in SHIPPED_KEYS if k.startswith("win-back/")] == [
        f"win-back/{n}" for n in "1234"
    ]


def test_every_shipped_template_renders_the_link_name_and_shop(templates: EmailTemplates) -> None:
    for key in SHIPPED_KEYS:
        rendered = templates.render(key, FULL)
        assert "\n" not in rendered.subject and rendered.subject, key
        for part in (rendered.text, rendered.html):
            assert "Ada" in part, key
            assert "Unsubscribe" in part, key
        assert URL in rendered.text, key
        assert f'<a href="{URL}"' in rendered.html, key
        assert "Acme & Co" in rendered.text, key
        assert "Acme &amp; Co" in rendered.html and "Acme & Co" not in rendered.html, key
        if key in COUPON_STEPS:
            assert "WELCOME10" in rendered.text and "WELCOME10" in rendered.html, key


def test_the_top_product_type_is_shown_and_has_a_fallback(templates: EmailTemplates) -> None:
    assert "Sneakers" in templates.render("welcome/2", FULL).text
    unknown = EmailContext(shop_name="Acme", unsubscribe_url=URL)
    assert "bestsellers" in templates.render("welcome/2", unknown).text


def test_an_unknown_first_name_falls_back(templates: EmailTemplates) -> None:
    for name in (None, "", "   ", "\r\n"):
        context = EmailContext(shop_name="Acme", unsubscribe_url=URL, first_name=name)
        assert f"Hi {FIRST_NAME_FALLBACK}," in templates.render("welcome/1", context).text


def test_a_script_in_a_name_is_escaped_in_html_and_kept_as_text(
    templates: EmailTemplates,
) -> None:
    context = EmailContext(
        shop_name="<b>Shop</b>", unsubscribe_url=URL, first_name="<script>alert(1)</script>"
    )
    rendered = templates.render("welcome/1", context)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "&lt;b&gt;Shop&lt;/b&gt;" in rendered.html
    # Plain text is not HTML: it shows the name as written.
    assert "Hi <script>alert(1)</script>," in rendered.text


def test_line_breaks_in_customer_data_never_reach_the_subject(templates: EmailTemplates) -> None:
    source = TemplateSource(subject="Hi {{ first_name }}", text="x", html="<p>x</p>")
    context = EmailContext(shop_name="A", unsubscribe_url=URL, first_name="Ann\r\nBcc: e@x\x00")
    assert templates.render_source(source, context).subject == "Hi Ann Bcc: e@x"


def test_a_coupon_step_without_a_coupon_is_a_clear_error(templates: EmailTemplates) -> None:
    context = EmailContext(shop_name="Acme", unsubscribe_url=URL, first_name="Ada")
    with pytest.raises(
        TemplateError, match=r"welcome/3 text, line \d+: 'coupon_code' is undefined"
    ):
        templates.render("welcome/3", context)


def test_a_merchants_template_renders_in_the_layout_with_the_link(
    templates: EmailTemplates,
) -> None:
    source = TemplateSource(
        subject="{{ shop_name }} news for {{ first_name }}",
        text="Hello {{ first_name }}{% if coupon_code is defined %}: {{ coupon_code }}{% endif %}",
        html="<p>Hello {{ first_name }}</p>",
    )
    rendered = templates.render_source(source, FULL)
    assert rendered.subject == "Acme & Co news for Ada"
    assert rendered.text.startswith("Hello Ada: WELCOME10\n")
    assert URL in rendered.text and f'href="{URL}"' in rendered.html
    assert "<p>Hello Ada</p>" in rendered.html


BROKEN = [
    (
        TemplateSource("Hi {{ frist_name }}", "x", "y"),
        r"subject, line 1: 'frist_name' is undefined",
    ),
    (TemplateSource("Hi", "a\n{% if %}", "y"), r"text, line 2: Expected an expression"),
    (TemplateSource("Hi", "a\n\n{{ 1 / 0 }}", "y"), r"text, line 3: ZeroDivisionError"),
    (
        TemplateSource("Hi", "x", "{{ ''.__class__.__mro__ }}"),
        r"html, line 1: SecurityError: access to attribute '__class__'",
    ),
    (TemplateSource("{{ '' }}", "x", "y"), r"subject: renders empty"),
    (TemplateSource("Hi", "x" * 100_001, "y"), r"text: longer than 100000 characters"),
]


def test_a_broken_template_is_a_clear_error_not_a_crash(templates: EmailTemplates) -> None:
    for source, message in BROKEN:
        with pytest.raises(TemplateError, match=f"^my-journey/2 {message}"):
            templates.render_source(source, FULL, name="my-journey/2")


def test_check_refuses_unknown_variables_and_passes_good_templates(
    templates: EmailTemplates,
) -> None:
    with pytest.raises(TemplateError, match="unknown variable frist_name"):
        templates.check(TemplateSource("Hi {{ frist_name }}", "x", "y"))
    with pytest.raises(TemplateError, match="html, line 1"):
        templates.check(TemplateSource("Hi", "x", "{% for %}"))
    for key in SHIPPED_KEYS:
        templates.check(templates.shipped(key), name=key)


def test_an_unknown_shipped_key_names_the_known_ones(templates: EmailTemplates) -> None:
    with pytest.raises(KeyError, match="welcome/1"):
        templates.shipped("welcome/9")


def test_the_package_data_globs_cover_every_template_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["*"]
    folder = ROOT / "services" / "tagger" / "email" / "templates"
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert len(files) == 2 + 2 * len(SHIPPED_KEYS)
    uncovered = [p.name for p in files if not any(fnmatch.fnmatch(p.name, g) for g in globs)]
    assert uncovered == []


def test_without_a_text_body_the_text_part_is_the_htmls_text(templates: EmailTemplates) -> None:
    source = TemplateSource(
        subject="News",
        text=None,
        html=(
            "<style>p{color:red}</style><h1>Hi {{ first_name }}</h1>"
            '<p>See <a href="https://shop.example/new">what is new</a> &amp; more.</p>'
            "<ul><li>Hats</li><li>Scarves</li></ul>"
        ),
    )
    rendered = templates.render_source(source, FULL)
    assert rendered.text.startswith(
        "Hi Ada\n\nSee what is new (https://shop.example/new) & more.\n\n- Hats\n- Scarves\n"
    )
    assert "color:red" not in rendered.text
    # The layout still adds the link to both parts.
    assert URL in rendered.text and f'href="{URL}"' in rendered.html
    templates.check(source)


UNSAFE = [
    ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__'"),
    ("{{ first_name.__class__.__base__.__subclasses__() }}", "access to attribute '__class__'"),
    ("{% set items = [] %}{{ items.append(1) }}", "access to attribute 'append'"),
    ("{{ 'x' * 1000000000 }}", "a repetition longer than 10000"),
    ("{{ 10 ** 100000000 }}", "an exponent above 64"),
    ("{{ range(10 ** 9) | list }}", "Range too big"),
]


@pytest.mark.parametrize(("html", "problem"), UNSAFE)
def test_the_sandbox_refuses_internals_mutation_and_huge_values(
    templates: EmailTemplates, html: str, problem: str
) -> None:
    source = TemplateSource("Hi", None, html)
    with pytest.raises(TemplateError, match=problem) as refused:
        templates.check(source)
    assert refused.value.part == "html"
    with pytest.raises(TemplateError, match=problem):
        templates.render_source(source, FULL)


def test_small_products_still_work(templates: EmailTemplates) -> None:
    source = TemplateSource("Hi", "{{ '-' * 3 }} {{ 2 ** 10 }} {{ 6 * 7 }}", "<p>x</p>")
    assert templates.render_source(source, FULL).text.startswith("--- 1024 42\n")
