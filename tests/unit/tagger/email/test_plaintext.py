"""The text part made from a merchant's HTML: paragraphs, breaks, lists, links, entities."""

from services.tagger.email.plaintext import html_to_text


def test_blocks_breaks_and_lists_become_lines() -> None:
    html = "<h2>New  in</h2><p>Line one<br>line   two</p><ol><li>A</li><li>B</li></ol><p>End</p>"
    assert html_to_text(html) == "New in\n\nLine one\nline two\n\n- A\n- B\n\nEnd"


def test_links_show_their_address_once_and_images_their_alt() -> None:
    html = (
        '<p><a href="https://x.example/a">Shop now</a> or '
        '<a href="https://x.example/b">https://x.example/b</a> or '
        '<a href="mailto:help@x.example">write</a> '
        '<a href="javascript:alert(1)">no</a> <img src="logo.png" alt="Logo"></p>'
    )
    assert html_to_text(html) == (
        "Shop now (https://x.example/a) or https://x.example/b or write (help@x.example) no Logo"
    )


def test_entities_are_decoded_and_head_style_script_left_out() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head>"
        "<body><script>var x</script><p>Fish &amp; chips &lt;3</p></body></html>"
    )
    assert html_to_text(html) == "Fish & chips <3"
