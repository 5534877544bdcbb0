// The search box: words typed are searched for (debounced, the first SEARCH_LIMIT results), the results are
// listed by title and author, and the one picked (arrows + Enter, or a click) is handed to `onPick`.
// An ARIA combobox: the keyboard stays in the box, the active result is its aria-activedescendant.

import { itemName } from "./card.js";
import { searchWords } from "./itemsapi.js";

const TYPING_MS = 200;  // a search starts once typing pauses this long (Enter starts it at once)

export class SearchBox {
    /** `onPick(item)` gets the result picked; `onLeave()` is asked to take the keyboard on Escape. */
    constructor(root, api, { onPick, onLeave }) {
        this.input = root.querySelector("#search-input");
        this.panel = root.querySelector("#search-panel");
        this.list = root.querySelector("#search-results");
        this.message = root.querySelector("#search-status");
        this.api = api;
        this.onPick = onPick;
        this.onLeave = onLeave;
        this.results = [];
        this.resultsFor = null;  // the text the listed results answer
        this.active = -1;
        this.seq = 0;
        this.timer = null;
        this.pickWhenAnswered = false;
        root.addEventListener("submit", (event) => event.preventDefault());
        this.input.addEventListener("input", () => this.typed());
        this.input.addEventListener("keydown", (event) => this.key(event));
        this.input.addEventListener("focus", () => this.setOpen(this.hasAnswer()));
        this.input.addEventListener("blur", () => this.setOpen(false));
        this.list.addEventListener("mousedown", (event) => event.preventDefault());  // the keyboard stays in the box
        this.list.addEventListener("click", (event) => {
            const option = event.target.closest("[role=option]");
            if (option) {
                this.pick(Number(option.dataset.index));
            }
        });
    }

    /** Whether there is something to show under the box: results or a message. */
    hasAnswer() {
        return this.results.length > 0 || this.message.textContent !== "";
    }

    focus() {
        this.input.focus();
        this.input.select();
    }

    typed() {
        clearTimeout(this.timer);
        this.pickWhenAnswered = false;
        this.timer = setTimeout(() => this.run(), TYPING_MS);
    }

    key(event) {
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
            event.preventDefault();
            if (this.results.length) {
                const count = this.results.length;
                const down = event.key === "ArrowDown";
                const start = down ? -1 : 0;  // from none, down is the first and up the last
                this.setActive(((this.active < 0 ? start : this.active) + (down ? 1 : -1) + count) % count);
                this.setOpen(true);
            }
        } else if (event.key === "Enter") {
            event.preventDefault();
            if (this.timer !== null || this.resultsFor !== this.input.value.trim()) {
                this.pickWhenAnswered = true;  // the first result of what is typed, once it is answered
                this.run();
            } else if (this.results.length) {
                this.pick(Math.max(0, this.active));
            }
        } else if (event.key === "Escape") {
            event.preventDefault();
            if (!this.panel.hidden) {
                this.setOpen(false);
            } else {
                this.onLeave();
            }
        }
    }

    async run() {
        clearTimeout(this.timer);
        this.timer = null;
        const text = this.input.value.trim();
        const seq = ++this.seq;
        if (searchWords(text).length === 0) {
            this.pickWhenAnswered = false;
            this.show(text, [], "");
            return;
        }
        this.input.setAttribute("aria-busy", "true");
        let answer;
        try {
            answer = await this.api.search(text);
        } catch (error) {
            if (seq === this.seq) {
                this.input.removeAttribute("aria-busy");
                this.show(text, [], `Search failed: ${error.message}`, true);
            }
            return;
        }
        if (seq !== this.seq) {
            return;  // an answer to older typing
        }
        this.input.removeAttribute("aria-busy");
        const items = answer.items;
        const count = answer.total === items.length ? `${answer.total}` : `first ${items.length} of ${answer.total}`;
        this.show(text, items, items.length ? `${count} result${answer.total === 1 ? "" : "s"}`
            : `No results for “${text}”`);
        if (this.pickWhenAnswered && items.length) {
            this.pick(0);
        }
        this.pickWhenAnswered = false;
    }

    /** List `items` (found for `text`) with `message` below; `failed` marks the message as an error. */
    show(text, items, message, failed = false) {
        this.results = items;
        this.resultsFor = text;
        this.active = -1;
        this.input.removeAttribute("aria-activedescendant");
        this.list.replaceChildren(...items.map((item, index) => {
            const option = document.createElement("li");
            option.id = `search-result-${index}`;
            option.setAttribute("role", "option");
            option.setAttribute("aria-selected", "false");
            option.dataset.index = String(index);
            option.dataset.item = String(item.id);
            const title = document.createElement("span");
            title.className = "result-title";
            title.textContent = itemName(item);
            option.append(title);
            if (item.meta && item.meta.author) {
                const author = document.createElement("span");
                author.className = "result-author";
                author.textContent = String(item.meta.author);
                option.append(author);
            }
            return option;
        }));
        this.list.hidden = items.length === 0;
        this.message.textContent = message;
        this.message.classList.toggle("error", failed);
        this.setOpen(document.activeElement === this.input && this.hasAnswer());
    }

    setActive(index) {
        this.active = index;
        for (const option of this.list.children) {
            option.setAttribute("aria-selected", String(Number(option.dataset.index) === index));
        }
        const option = this.list.children[index];
        this.input.setAttribute("aria-activedescendant", option.id);
        option.scrollIntoView({ block: "nearest" });
    }

    setOpen(open) {
        this.panel.hidden = !open;
        this.input.setAttribute("aria-expanded", String(open && this.results.length > 0));
    }

    pick(index) {
        const item = this.results[index];
        if (item) {
            this.setActive(index);
            this.setOpen(false);
            this.onPick(item);
        }
    }
}
