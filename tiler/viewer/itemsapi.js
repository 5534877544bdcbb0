// The bookstore's questions to the server (docs/architecture.md): which item is drawn at a canvas pixel, one
// item by id, and search. Each request names the generation on show (`v`), so the server and the proxy may
// cache the answer for a year and a new generation never gets an old answer.

export const SEARCH_LIMIT = 10;  // results listed under the search box
const HITS_KEPT = 2000;  // hit-test answers remembered per generation (a pixel: an item or the background)

/** An error of the items routes with the HTTP status kept (404: no such item, or only background). */
export class ItemsError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

async function fetchItems(url, signal) {
    const response = await fetch(url, { signal });
    if (!response.ok) {
        const text = (await response.text()).trim().split("\n")[0].slice(0, 160);
        throw new ItemsError(response.status, `HTTP ${response.status}${text ? ` ${text}` : ""}`);
    }
    return response.json();
}

export class ItemsApi {
    /** `tilesBase` is ".../tiles/"; `generation()` the generation on show. */
    constructor(tilesBase, dataset, generation) {
        this.base = `${tilesBase}${encodeURIComponent(dataset)}/`;
        this.generation = generation;
        this.hits = new Map();  // "x,y" -> item or null (background), for hitsGeneration
        this.hitsGeneration = null;
    }

    url(path, params) {
        const query = new URLSearchParams(params);
        const generation = this.generation();
        if (generation !== null && generation !== undefined) {
            query.set("v", String(generation));
        }
        return `${this.base}${path}?${query}`;
    }

    /** The topmost item drawn at canvas pixel (x, y), or null where only the background shows. Answers are
     *  remembered per generation, so a pointer coming back to a pixel asks nothing. */
    async at(x, y, signal) {
        const generation = this.generation();
        if (generation !== this.hitsGeneration) {
            this.hits.clear();
            this.hitsGeneration = generation;
        }
        const key = `${x},${y}`;
        if (this.hits.has(key)) {
            return this.hits.get(key);
        }
        let item;
        try {
            item = await fetchItems(this.url("items/at", { x, y }), signal);
        } catch (error) {
            if (!(error instanceof ItemsError && error.status === 404)) {
                throw error;
            }
            item = null;
        }
        if (this.hitsGeneration === generation) {
            if (this.hits.size >= HITS_KEPT) {
                this.hits.delete(this.hits.keys().next().value);  // the oldest
            }
            this.hits.set(key, item);
        }
        return item;
    }

    /** One item; an ItemsError with status 404 when the generation on show has no such id. */
    one(id, signal) {
        return fetchItems(this.url(`items/${encodeURIComponent(id)}`, {}), signal);
    }

    /** The first SEARCH_LIMIT items matching `text`, best first: `{total, items}`. */
    search(text, signal) {
        return fetchItems(this.url("search", { q: text, limit: SEARCH_LIMIT }), signal);
    }
}

/** Whether `text` holds a word the server searches for (letters or digits; punctuation alone is none). */
export function hasWords(text) {
    return /[\p{L}\p{N}]/u.test(text);
}
