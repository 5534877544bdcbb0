"""The bookstore in the viewer, in real headless Chromium against a real ``tiler serve`` of a generated wall with
its metadata (title, author, category, url): search a title, fly to the book, click it and read its card; hover
outlines the book under a resting pointer (nothing over the background, no request while the pointer moves);
``?item=<id>`` links open on the book, also after a diff moved it, and say so for an unknown id; all of it with
the keyboard alone.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from proxy.target import check_target
from tests.processes import free_port, start_tiler_serve
from tests.viewer.conftest import ServedWall
from tests.viewer.pages import IN_VIEW, SCREEN_BOX, ZOOM_ARRIVED, item_box, screen_centre
from tiler.local_publish import publish_local

pytestmark = pytest.mark.usefixtures("browser")  # skip (or fail in CI) before building any wall

CARD_OPEN = "#card:not([hidden])"


def read_items(src: Path) -> list[dict]:
    with (src / "items.csv").open(newline="", encoding="utf-8") as handle:
        return [{**row, "x": int(row["x"]), "y": int(row["y"]), "width": int(row["width"]),
                 "height": int(row["height"])} for row in csv.DictReader(handle)]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def findable_book(items: list[dict]) -> dict:
    """A book whose title's words are in no other title: a search for its title lists it alone."""
    for item in items:
        mine = set(words(item["title"]))
        if not any(mine <= set(words(other["title"])) for other in items if other is not item):
            return item
    raise AssertionError("every title shares its words with another")


def shouted(title: str) -> str:
    """`title` as someone may type it: in capitals, its first vowel accented (the server folds both away)."""
    upper = title.upper()
    i = next(n for n, ch in enumerate(upper) if ch in "AEIOU")
    return upper[:i] + unicodedata.normalize("NFC", upper[i] + "\u0301") + upper[i + 1:]


def assert_proxy_forwards(tab) -> None:
    """tile-proxy refuses malformed and long queries: every bookstore question stays within its rules."""
    assert tab.items
    for url, _ in tab.items:
        parts = urlsplit(url)
        check_target(parts.path.encode(), parts.query.encode())


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def card_text(page) -> dict:
    return page.evaluate("""() => ({
        title: document.getElementById('card-title').textContent,
        fields: Object.fromEntries([...document.querySelectorAll('#card-fields dt')].map(
            (dt) => [dt.textContent, dt.nextElementSibling.textContent])),
        link: document.getElementById('card-link').hidden ? null : document.getElementById('card-link').href,
    })""")


def test_search_flies_to_the_book_and_a_click_on_it_opens_its_card(wall: ServedWall, open_tab):
    book = findable_book(read_items(wall.src))
    tab = open_tab(f"{wall.base}/viewer/")
    page = tab.page
    tab.settle()

    page.click("#search-input")
    page.keyboard.type(shouted(book["title"]))
    option = page.wait_for_selector(f"#search-results [role=option][data-item='{book['id']}']")
    assert book["title"] in option.inner_text() and book["author"] in option.inner_text()
    assert page.inner_text("#search-status") == "1 result"
    option.click()
    page.wait_for_selector(CARD_OPEN)
    tab.settle()
    assert page.evaluate(IN_VIEW, item_box(book)), "the book is not in view after flying to it"
    shown = page.evaluate(SCREEN_BOX, item_box(book))
    card = page.locator("#card").bounding_box()
    assert shown["x"] + shown["width"] <= card["x"], "the card hides the book"
    assert page.get_attribute(".item-chosen", "data-item") == book["id"]
    assert query_of(page.url)["item"] == [book["id"]] and urlsplit(page.url).fragment == ""

    page.click("#card-close")
    assert page.is_hidden("#card") and "item" not in query_of(page.url)
    page.wait_for_function("() => /^#x=/.test(location.hash)")  # the view is in the address again

    before = tab.settle()["view"]
    page.mouse.click(*screen_centre(page, book))
    page.wait_for_selector(CARD_OPEN)
    card = card_text(page)
    assert card["title"] == book["title"]
    assert card["fields"] == {"author": book["author"], "category": book["category"], "id": book["id"]}
    assert card["link"] == book["url"] and page.get_attribute("#card-link", "rel") == "noopener noreferrer"
    assert tab.settle()["view"] == before  # a click on a book opens its card and does not zoom
    tab.assert_tiles_ok()
    assert_proxy_forwards(tab)


def topmost_at(items: list[dict], x: float, y: float) -> dict | None:
    """The item drawn on top at canvas point (x, y): the last row covering it (later rows are drawn over)."""
    found = [i for i in items if i["x"] <= x < i["x"] + i["width"] and i["y"] <= y < i["y"] + i["height"]]
    return found[-1] if found else None


def leftmost(items: list[dict]) -> dict:
    return min(items, key=lambda i: (i["x"], i["y"]))


def background_pixel(items: list[dict]) -> tuple[int, int]:
    """A canvas pixel left of the leftmost book, where no book is drawn."""
    first = leftmost(items)
    x, y = first["x"] // 2, first["y"] + first["height"] // 2
    assert topmost_at(items, x, y) is None
    return x, y


def wait_until(page, condition, timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"not true after {timeout_s} s")


def hovered(page) -> str | None:
    return page.evaluate("() => { const e = document.querySelector('.item-hover');"
                         " return e && e.isConnected && e.closest('.openseadragon-canvas') ? e.dataset.item : null; }")


def test_hover_outlines_the_book_under_a_resting_pointer_and_nothing_on_the_background(wall: ServedWall, open_tab):
    items = read_items(wall.src)
    book = leftmost(items)  # beside the background at the wall's edge
    x, y = book["x"] + book["width"] // 2, book["y"] + book["height"] // 2
    tab = open_tab(f"{wall.base}/viewer/#x={x}&y={y}&zoom=0.25")
    page = tab.page
    tab.settle()

    page.mouse.move(*screen_centre(page, book))
    page.wait_for_function(f"() => document.querySelector('.item-hover')?.dataset.item === '{book['id']}'")
    outline = page.locator(".item-hover").bounding_box()
    drawn = page.evaluate(SCREEN_BOX, item_box(book))
    assert all(abs(outline[k] - drawn[k]) < 1.5 for k in ("x", "y", "width", "height")), (outline, drawn)
    assert page.inner_text(".item-hover .item-label") == book["title"]
    assert len(tab.hit_tests()) == 1 and "v=1" in tab.hit_tests()[0][0]

    background = background_pixel(items)
    page.mouse.move(*screen_centre(page, {"x": background[0], "y": background[1], "width": 1, "height": 1}))
    page.wait_for_function("() => !document.querySelector('.item-hover')?.closest('.openseadragon-canvas')")
    wait_until(page, lambda: len(tab.hit_tests()) == 2)
    assert [status for _, status in tab.hit_tests()] == [200, 404]  # the background: nothing outlined, no error
    assert hovered(page) is None

    # back to the same pixel of the book: outlined again from what the page remembers, no request
    page.mouse.move(*screen_centre(page, book))
    page.wait_for_function(f"() => document.querySelector('.item-hover')?.dataset.item === '{book['id']}'")
    assert len(tab.hit_tests()) == 2

    # sweeping across the wall asks nothing until the pointer rests; a drag asks nothing while it drags
    box = page.locator("#view").bounding_box()
    asked = len(tab.hit_tests())
    page.mouse.move(box["x"] + 40, box["y"] + 40, steps=25)
    page.mouse.move(box["x"] + box["width"] - 40, box["y"] + box["height"] - 40, steps=25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=20)
    page.mouse.up()
    tab.settle()
    page.wait_for_timeout(400)
    assert len(tab.hit_tests()) - asked <= 2, tab.hit_tests()[asked:]  # the rest after the sweep, after the drag
    assert page.is_hidden("#card")  # a drag is not a click
    assert tab.bad == []


def twins(items: list[dict]) -> tuple[dict, dict]:
    """Two books showing the same cover (so of the same size) at different places."""
    by_image: dict[str, dict] = {}
    for item in items:
        if item["image"] in by_image:
            return by_image[item["image"]], item
        by_image[item["image"]] = item
    raise AssertionError("no cover is shown twice")


def move_and_retitle(src: Path, moved: dict, other: dict, title: str) -> None:
    """Swap the places of two books of the same size and give the first a new title (a re-layout)."""
    with (src / "items.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["id"] == moved["id"]:
            row.update(x=str(other["x"]), y=str(other["y"]), title=title)
        elif row["id"] == other["id"]:
            row.update(x=str(moved["x"]), y=str(moved["y"]))
    with (src / "items.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


CHOSEN_AT = "() => { const i = window.gigatile.bookstore.highlights.item('chosen'); return i && [i.x, i.y]; }"


def test_an_item_link_opens_on_the_book_also_after_a_diff_moved_it(changing_wall: ServedWall, open_tab):
    items = read_items(changing_wall.src)
    book, other = twins(items)
    link = f"{changing_wall.base}/viewer/?item={book['id']}&poll=0.5"
    tab = open_tab(link)
    page = tab.page
    page.wait_for_selector(CARD_OPEN)
    tab.settle()
    assert page.evaluate(IN_VIEW, item_box(book)) and page.evaluate(CHOSEN_AT) == [book["x"], book["y"]]
    assert card_text(page)["title"] == book["title"] and page.url == link  # the address still names the book

    # a diff moves the book to where the other was and retitles it (with markup, which must stay text)
    title = 'Moved <img src=x onerror="window.injected=1"> & "Retitled"'
    move_and_retitle(changing_wall.src, book, other, title)
    assert publish_local(changing_wall.src, changing_wall.folder) == 2
    page.wait_for_function("() => document.getElementById('generation').dataset.generation === '2'", timeout=15000)
    page.wait_for_function(f"() => document.getElementById('card-title').textContent === {title!r}")
    assert page.evaluate(CHOSEN_AT) == [other["x"], other["y"]]  # the open page's outline followed the book

    again = open_tab(link)
    again.page.wait_for_selector(CARD_OPEN)
    again.settle()
    moved = {**book, "x": other["x"], "y": other["y"]}
    assert again.page.evaluate(IN_VIEW, item_box(moved)) and not again.page.evaluate(IN_VIEW, item_box(book))
    assert card_text(again.page)["title"] == title
    assert again.page.evaluate("() => document.querySelector('#card img') === null && window.injected === undefined")
    assert [url for url, _ in again.items] == [f"{changing_wall.base}/tiles/covers/items/{book['id']}?v=2"]
    again.assert_tiles_ok()

    unknown = open_tab(f"{changing_wall.base}/viewer/?item=no-such-book")
    unknown.page.wait_for_selector("#notice:not([hidden])")
    assert "no item “no-such-book” in covers" in unknown.page.inner_text("#notice-text")
    plain = open_tab(f"{changing_wall.base}/viewer/")
    assert unknown.settle()["view"] == plain.settle()["view"]  # the start view
    assert unknown.page.is_hidden("#card") and "item" not in query_of(unknown.page.url)
    assert unknown.bad == [f"404 {changing_wall.base}/tiles/covers/items/no-such-book?v=2"]


def common_first_name(items: list[dict]) -> str:
    """An author's first name that several books share (a search for it lists several)."""
    names = [item["author"].split()[0] for item in items]
    return max(set(names), key=lambda name: (names.count(name), name))


ACTIVE = "() => document.activeElement.id || document.activeElement.className"
OUTLINED = "() => getComputedStyle(document.activeElement).outlineStyle !== 'none'"


def refuse_some_searches(route) -> None:
    if "q=unavailable" in route.request.url:
        route.fulfill(status=503, body="search is busy; retry shortly\n")
    else:
        route.continue_()


def test_the_bookstore_with_the_keyboard_alone(wall: ServedWall, open_tab):
    items = read_items(wall.src)
    tab = open_tab(f"{wall.base}/viewer/", before=lambda page: page.route("**/search?*", refuse_some_searches))
    page = tab.page
    tab.settle()
    assert page.evaluate(ACTIVE) == "openseadragon-canvas"  # the wall has the keyboard after loading

    page.keyboard.press("/")
    assert page.evaluate(ACTIVE) == "search-input"
    page.keyboard.type(common_first_name(items))
    page.wait_for_selector("#search-results [role=option] >> nth=2")
    assert page.get_attribute("#search-input", "aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    second = page.locator("#search-results [role=option]").nth(1)
    assert second.get_attribute("aria-selected") == "true"
    assert page.get_attribute("#search-input", "aria-activedescendant") == second.get_attribute("id")
    chosen = next(i for i in items if i["id"] == second.get_attribute("data-item"))
    page.keyboard.press("Enter")
    page.wait_for_selector(CARD_OPEN)
    assert page.evaluate(ACTIVE) == "card" and card_text(page)["title"] == chosen["title"]
    assert page.get_attribute("#card", "role") == "dialog" and page.get_attribute("#card", "aria-labelledby")
    tab.settle()
    assert page.evaluate(IN_VIEW, item_box(chosen))

    page.keyboard.press("Tab")
    assert page.evaluate(ACTIVE) == "card-close" and page.evaluate(OUTLINED)
    page.keyboard.press("Tab")
    assert page.evaluate(ACTIVE) == "card-link" and page.evaluate(OUTLINED)
    page.keyboard.press("Escape")  # closes the card, the keyboard goes back to the search box
    assert page.is_hidden("#card") and page.evaluate(ACTIVE) == "search-input"
    page.keyboard.press("Escape")  # closes the results
    assert page.is_hidden("#search-panel")
    page.keyboard.press("Escape")  # and gives the keyboard back to the wall
    assert page.evaluate(ACTIVE) == "openseadragon-canvas" and page.evaluate(OUTLINED)

    # Enter on the wall: the card of the book at the centre of the view (or a word saying there is none)
    view = tab.settle()["view"]
    centre = topmost_at(items, view["x"], view["y"])
    page.keyboard.press("Enter")
    if centre is None:
        page.wait_for_selector("#notice:not([hidden])")
        assert "No book at the centre" in page.inner_text("#notice-text")
    else:
        page.wait_for_selector(CARD_OPEN)
        assert card_text(page)["fields"]["id"] == centre["id"] and page.evaluate(ACTIVE) == "card"
        page.keyboard.press("Escape")
        assert page.is_hidden("#card") and page.evaluate(ACTIVE) == "openseadragon-canvas"

    # Enter right after typing searches at once and goes to the first result
    book = findable_book(items)
    page.keyboard.press("/")
    page.keyboard.type(book["title"])
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.getElementById('card-title').textContent === {book['title']!r}")
    for _ in range(3):  # the card, the results, the search box
        page.keyboard.press("Escape")
    assert page.evaluate(ACTIVE) == "openseadragon-canvas"

    for typed, said in (("zzqxwv", "No results for “zzqxwv”"),
                        ("unavailable", "Search failed: HTTP 503 search is busy; retry shortly")):
        page.keyboard.press("/")  # the search box, its text selected: typing replaces it
        page.keyboard.type(typed)
        page.wait_for_function(f"() => document.getElementById('search-status').textContent === {said!r}")
        assert page.is_hidden("#search-results")
        assert page.evaluate("() => document.getElementById('search-status').classList.contains('error')") == (
            "failed" in said)
        page.keyboard.press("Escape")
        page.keyboard.press("Escape")
    assert tab.bad == [f"503 {wall.base}/tiles/covers/search?q=unavailable&limit=10&v=1"]


def test_a_card_shows_every_column_as_text_and_links_only_http_urls(wall: ServedWall, open_tab):
    tab = open_tab(f"{wall.base}/viewer/")
    tab.settle()
    shown = tab.page.evaluate("""async () => {
        const { renderCard, safeLink } = await import('./card.js');
        const card = document.getElementById('card');
        const elements = { title: card.querySelector('#card-title'), fields: card.querySelector('#card-fields'),
                           link: card.querySelector('#card-link') };
        const links = ['https://books.example.com/a?b=1', ' http://x.test/ ', 'javascript:alert(1)',
                       'data:text/html,<b>x</b>', 'ftp://x.test/', 'books.example.com', ''].map(safeLink);
        const shown = [];
        for (const url of ['javascript:window.injected=1', 'https://books.example.com/9']) {
            renderCard(elements, { id: 'x<1>', meta: { title: '<b>bold</b>', price: '<img src=x onerror=alert(1)>',
                                                       url } });
            shown.push({ title: elements.title.innerHTML, fields: elements.fields.innerHTML,
                         link: elements.link.hidden ? null : elements.link.getAttribute('href') });
        }
        return { links, shown };
    }""")
    assert shown["links"] == ["https://books.example.com/a?b=1", "http://x.test/", None, None, None, None, None]
    not_a_link, link = shown["shown"]
    assert not_a_link["title"] == "&lt;b&gt;bold&lt;/b&gt;" and not_a_link["link"] is None
    assert not_a_link["fields"] == ("<dt>price</dt><dd>&lt;img src=x onerror=alert(1)&gt;</dd>"
                                    "<dt>url</dt><dd>javascript:window.injected=1</dd><dt>id</dt><dd>x&lt;1&gt;</dd>")
    assert link["link"] == "https://books.example.com/9" and "<dt>url</dt>" not in link["fields"]


def test_search_words_and_item_addresses_keep_to_the_server_and_proxy_rules(wall: ServedWall, open_tab):
    from gigaformat.itemsdb import search_words

    typed = ["Ångström, THE  straße!! 東京 a_b", "e\u0301clair 42nd",
             "one two three four five six seven eight nine", "x" * 400 + " yy zz", "¿?!"]
    page = open_tab(f"{wall.base}/viewer/").page
    page.wait_for_function("() => window.gigatile.state().images === 1")
    got = page.evaluate("""async (typed) => {
        const { searchWords } = await import('./itemsapi.js');
        const { addressNaming, linkedItem } = await import('./viewstate.js');
        const named = addressNaming('http://h/viewer/?dataset=covers&poll=0.5#x=1&y=2&zoom=1', 'a:b@c+d.e_f-9');
        return { words: typed.map(searchWords), named, linked: linkedItem(`http://h${named}`),
                 escaped: linkedItem('http://h/?dataset=covers&item=a%3Ab%40c%2Bd'), none: linkedItem('http://h/?x=1'),
                 cleared: addressNaming(`http://h${named}#x=5&y=6&zoom=1`, null),
                 renamed: addressNaming(`http://h${named}`, '7'),
                 first: addressNaming('http://h/?item=3&dataset=covers', '4') };
    }""", typed)
    assert got["words"][:3] == [["ångström", "the", "straße", "東京", "a", "b"], ["éclair", "42nd"],
                                ["one", "two", "three", "four", "five", "six", "seven", "eight"]]
    for text, words in zip(typed[:3], got["words"][:3], strict=True):  # the server reads them as the text typed
        assert search_words(" ".join(words)) == search_words(text)[:8], text
    assert got["words"][3] == ["yy", "zz"] and got["words"][4] == []  # a word too long for the proxy is left out
    assert got["named"] == "/viewer/?dataset=covers&poll=0.5&item=a:b@c+d.e_f-9"
    check_target(b"/viewer/", urlsplit(got["named"]).query.encode())  # the proxy serves the page at that address
    assert got["linked"] == "a:b@c+d.e_f-9" and got["escaped"] == "a:b@c+d" and got["none"] is None
    assert got["cleared"] == "/viewer/?dataset=covers&poll=0.5#x=5&y=6&zoom=1"
    assert got["renamed"] == "/viewer/?dataset=covers&poll=0.5&item=7" and got["first"] == "/?item=4&dataset=covers"


def test_the_bookstore_through_tile_proxy(wall: ServedWall, s3_bucket, open_tab, tmp_path: Path):
    """The demo's path: the page and every question through a real tile-proxy to a node registered in S3."""
    from tests.proxy.conftest import Proxies

    items = read_items(wall.src)
    linked, searched = items[len(items) // 2], findable_book(items)
    port = free_port("127.0.0.2")
    node = start_tiler_serve(wall.folder.root, "covers", "127.0.0.2", port, tmp_path / "node.log", "--workers", "1",
                             "--bucket", s3_bucket.name, "--advertise", "127.0.0.2", env=s3_bucket.env)
    proxies = Proxies(s3_bucket, tmp_path)
    try:
        proxy = proxies.start()
        proxy.wait_live({f"127.0.0.2:{port}"}, timeout=30)
        tab = open_tab(f"{proxy.url}/?item={linked['id']}")
        page = tab.page
        page.wait_for_selector(CARD_OPEN)
        assert card_text(page)["title"] == linked["title"]
        tab.settle()
        assert page.evaluate(IN_VIEW, item_box(linked))

        page.keyboard.press("/")
        page.keyboard.type(shouted(searched["title"]))
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => document.getElementById('card-title').textContent === {searched['title']!r}")
        assert query_of(page.url)["item"] == [searched["id"]]
        page.keyboard.press("Escape")
        tab.settle()
        page.mouse.move(*screen_centre(page, searched))
        page.wait_for_function(f"() => document.querySelector('.item-hover')?.dataset.item === '{searched['id']}'")
        assert sorted({status for _, status in tab.items}) == [200] and len(tab.items) >= 3
        tab.assert_tiles_ok()
    finally:
        proxies.stop_all()
        node.stop()


def test_a_book_too_small_to_point_at_is_zoomed_to_not_opened(wall: ServedWall, open_tab):
    items = read_items(wall.src)
    book = min(items, key=lambda i: (i["width"], i["y"], i["x"]))  # a narrow one, away from the mini-map
    tab = open_tab(f"{wall.base}/viewer/", viewport={"width": 280, "height": 200})
    page = tab.page
    tab.settle()
    page.keyboard.press("0")  # the whole wall, in a small window: the books are a few pixels wide
    page.wait_for_function(f"() => window.gigatile.state().view.zoom < 0.05 && {ZOOM_ARRIVED}")
    zoom = tab.settle()["view"]["zoom"]
    assert book["width"] * zoom < 16

    page.mouse.move(*screen_centre(page, book))
    wait_until(page, lambda: len(tab.hit_tests()) == 1)
    page.wait_for_timeout(200)
    assert tab.hit_tests()[0][1] == 200 and hovered(page) is None  # there, but too small to outline
    page.mouse.click(*screen_centre(page, book))
    page.wait_for_function(f"() => window.gigatile.state().view.zoom > {zoom * 1.99}")
    assert page.is_hidden("#card")

    assert book["width"] * tab.settle()["view"]["zoom"] >= 16
    page.mouse.click(*screen_centre(page, book))
    page.wait_for_selector(CARD_OPEN)
    assert card_text(page)["fields"]["id"] == book["id"]
