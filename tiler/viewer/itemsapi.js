// The bookstore's questions to the server (docs/architecture.md): which item is drawn at a canvas pixel, one
// item by id, and search. Each request names the generation on show (`v`), so the server and the proxy may
// cache the answer for a year and a new generation never gets an old answer.

import { fetchJson, HttpError } from "./live.js";

export const SEARCH_LIMIT = 10;  // results listed under the search box
const HITS_KEPT = 2000;  // hit-test answers remembered per generation (a pixel: an item or the background)
const MAX_WORDS = 8;  // the server reads the first 8 words (tiler/items.py)
const MAX_QUERY_CHARS = 400;  // of q, percent-escaped: with limit and v, within tile-proxy's 512 of a query

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
 * The words of `text` as the search box sends them: runs of letters and digits of the text composed (NFC),
 * lowercase, at most MAX_WORDS (the server reads 8: tiler/items.py), while q stays within MAX_QUERY_CHARS once
 * percent-escaped (a longer word is left out). The server folds them as its index folds titles
 * (gigaformat/itemsdb.search_words: Søren -> soren, Straße -> strasse, 東京物語 -> 東京 物語), so they are sent as typed.
 */
export function searchWords(text) {
    const words = [];
    let length = 0;
    for (const [word] of text.normalize("NFC").matchAll(/[\p{L}\p{N}]+/gu)) {
        const lower = word.toLowerCase();
        const escaped = encodeURIComponent(lower).length;
        if (words.length === MAX_WORDS) {
            break;
        }
        if (length + escaped + 3 > MAX_QUERY_CHARS) {  // 3: the escaped space before it
            continue;
        }
        words.push(lower);
        length += escaped + 3;
    }
    return words;
}
