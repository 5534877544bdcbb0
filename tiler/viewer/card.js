// The card of one item: its metadata (whatever columns the dataset has) and its link, in a non-modal dialog
// beside the wall. Every value is set as text (never as HTML), and only http(s) URLs become links.

const TITLE_COLUMN = "title";
const LINK_COLUMN = "url";

/** `text` as a URL a link may point at (http or https), or null. */
export function safeLink(text) {
    let url;
    try {
        url = new URL(String(text).trim());
    } catch {
        return null;
    }
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** The heading of an item's card and its screen readers' name: its title, else its id. */
export function itemName(item) {
    const title = item.meta && item.meta[TITLE_COLUMN];
    return title ? String(title) : `item ${item.id}`;
}

/** Fill `card` (the elements of index.html's #card) with `item`. */
export function renderCard(elements, item) {
    const { title, fields, link } = elements;
    title.textContent = itemName(item);
    const rows = [];
    const meta = item.meta || {};
    for (const [column, value] of Object.entries(meta)) {
        if (column === TITLE_COLUMN || (column === LINK_COLUMN && safeLink(value))) {
            continue;
        }
        rows.push([column, String(value)]);
    }
    rows.push(["id", String(item.id)]);
    fields.replaceChildren(...rows.flatMap(([column, value]) => {
        const term = document.createElement("dt");
        term.textContent = column;
        const detail = document.createElement("dd");
        detail.textContent = value;
        return [term, detail];
    }));
    const href = safeLink(meta[LINK_COLUMN]);
    link.hidden = href === null;
    link.textContent = href === null ? "" : href;
    if (href === null) {
        link.removeAttribute("href");
    } else {
        link.href = href;
    }
}

/** The card dialog (#card): `open(item, {focus})` shows it, `close()` hides it and gives the focus back. */
export class Card {
    /** `onClose()` runs after each close; `fallbackFocus()` is where the keyboard goes when the card had it
     *  and nothing else to give it back to. */
    constructor(root, { onClose, fallbackFocus }) {
        this.root = root;
        this.elements = {
            title: root.querySelector("#card-title"),
            fields: root.querySelector("#card-fields"),
            link: root.querySelector("#card-link"),
        };
        this.onClose = onClose;
        this.fallbackFocus = fallbackFocus;
        this.item = null;
        this.returnFocus = null;
        root.querySelector("#card-close").addEventListener("click", () => this.close());
        root.addEventListener("keydown", (event) => {
            if (event.key === "Escape") {
                event.preventDefault();
                event.stopPropagation();
                this.close();
            }
        });
    }

    get isOpen() {
        return this.item !== null;
    }

    /** Show `item`; with `focus`, move the keyboard into the card (Escape or close gives it back). */
    open(item, { focus = false } = {}) {
        this.item = item;
        renderCard(this.elements, item);
        this.root.hidden = false;
        if (focus) {
            const active = document.activeElement;
            if (!this.root.contains(active)) {
                this.returnFocus = active;
            }
            this.root.focus();
        }
    }

    /** Show what the card's item is now (a new generation may retitle it), leaving the focus where it is. */
    update(item) {
        if (this.isOpen) {
            this.item = item;
            renderCard(this.elements, item);
        }
    }

    close() {
        if (!this.isOpen) {
            return;
        }
        const hadFocus = this.root.contains(document.activeElement);
        this.item = null;
        this.root.hidden = true;
        const back = this.returnFocus;
        this.returnFocus = null;
        if (hadFocus) {
            (back && document.contains(back) ? back : this.fallbackFocus()).focus();
        }
        this.onClose();
    }

    /** How much of the wall's right side the card covers, in CSS px (0 when hidden). */
    coveredWidth() {
        return this.root.hidden ? 0 : this.root.getBoundingClientRect().width;
    }
}
