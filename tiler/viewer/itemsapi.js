// The bookstore's questions to the server (docs/architecture.md): which item is drawn at a canvas pixel, one
// item by id, and search. Each request names the generation on show (`v`), so the server and the proxy may
// cache the answer for a year and a new generation never gets an old answer.

import { fetchJson, HttpError } from "./live.js";

export const SEARCH_LIMIT = 10;  // results listed under the search box
const HITS_KEPT = 2000;  // hit-test answers remembered per generation (a pixel: an item or the background)
const MAX_WORDS = 8;  // the server reads the first 8 words (tiler/items.py)
const MAX_QUERY_CHARS = 96;  // of q: with limit and v, within tile-proxy's 128 characters of query

/** A question answered from the browser's cache when it has the answer: it names the generation (`v`). */
function fetchItems(url) {
    return fetchJson(url, {});
}

export class ItemsApi {
    /** `tilesBase` is ".../tiles/"; `generation()` the generation on show. */
    constructor(tilesBase, dataset, generation) {
        this.base = `${tilesBase}${encodeURIComponent(dataset)}/`;
        this.generation = generation;
        this.hits = new Map();  // "x,y" -> a promise of the item there or null (background), for hitsGeneration
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

    /** The topmost item drawn at canvas pixel (x, y), or null where only the background shows. Answers (and
     *  questions under way) are remembered per generation, so a pointer coming back to a pixel asks nothing. */
    at(x, y) {
        const generation = this.generation();
        if (generation !== this.hitsGeneration) {
            this.hits.clear();
            this.hitsGeneration = generation;
        }
        const key = `${x},${y}`;
        let answer = this.hits.get(key);
        if (answer === undefined) {
            answer = fetchItems(this.url("items/at", { x, y })).catch((error) => {
                if (error instanceof HttpError && error.status === 404) {
                    return null;  // only the background there
                }
                if (this.hits.get(key) === answer) {
                    this.hits.delete(key);  // a failure is not an answer: ask again next time
                }
                throw error;
            });
            if (this.hits.size >= HITS_KEPT) {
                this.hits.delete(this.hits.keys().next().value);  // the oldest
            }
            this.hits.set(key, answer);
        }
        return answer;
    }

    /** One item; an HttpError with status 404 when the generation on show has no such id. */
    one(id) {
        return fetchItems(this.url(`items/${encodeURIComponent(id)}`, {}));
    }

    /** The first SEARCH_LIMIT items holding every word of `text` (searchWords), best first: `{total, items}`. */
    search(text) {
        return fetchItems(this.url("search", { q: searchWords(text).join(" "), limit: SEARCH_LIMIT }));
    }
}

/**
 * The words of `text` the server searches for, as it reads them (tiler/items.py, gigaformat/itemsdb.fold):
 * runs of letters, digits and `_`, at most MAX_WORDS, each folded to lowercase ASCII (Ångström: angstrom).
 * Sending them folded keeps the query plain ASCII, which tile-proxy forwards (it refuses percent-escapes in
 * a query), and short enough for its 128-character query limit.
 */
export function searchWords(text) {
    const words = [];
    let length = 0;
    for (const [word] of text.normalize("NFC").matchAll(/[\p{L}\p{N}_]+/gu)) {
        const folded = word.normalize("NFKD").replace(/[^\x00-\x7f]/g, "").toLowerCase();
        if (words.length === MAX_WORDS) {
            break;
        }
        if (!folded || length + folded.length + 1 > MAX_QUERY_CHARS) {
            continue;
        }
        words.push(folded);
        length += folded.length + 1;
    }
    return words;
}
