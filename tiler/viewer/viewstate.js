// The view kept in the URL fragment: "#x=<canvas x>&y=<canvas y>&zoom=<screen px per canvas px>".
// x and y are the canvas pixel at the centre of the view; zoom 1 shows the canvas 1:1.
// While an item's card is open the address names the item instead: "?item=<id>", no fragment, so the link
// finds the item wherever a later generation puts it.

// Where the page opens without a fragment: the middle of the wall at 1/8 of 1:1, where a generated cover
// (650-1200 px tall) is 80-150 screen px tall and its title readable; `make demo-update` changes covers
// there (scripts/demo_update.py). A wall that fits the screen at that zoom opens whole.
export const START_ZOOM = 0.125;
// One key press zooms by this factor (as one click does): from the whole 46-Gpx wall to 1:1 in 8 presses.
export const ZOOM_STEP = 2;

/** The view the page opens at: the canvas centre at START_ZOOM, or null (the whole wall) when the whole
 *  wall already shows at `wholeWallZoom` >= START_ZOOM. */
export function startView(width, height, wholeWallZoom) {
    if (wholeWallZoom >= START_ZOOM) {
        return null;
    }
    return { x: width / 2, y: height / 2, zoom: START_ZOOM };
}

/** The view named by a fragment such as "#x=100&y=200&zoom=0.5", or null when it names none. */
export function parseView(hash) {
    const params = new URLSearchParams(hash.replace(/^#/, ""));
    const x = Number(params.get("x"));
    const y = Number(params.get("y"));
    const zoom = Number(params.get("zoom"));
    const given = ["x", "y", "zoom"].every((key) => params.get(key) !== null && params.get(key) !== "");
    if (!given || !Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(zoom) || zoom <= 0) {
        return null;
    }
    return { x, y, zoom };
}

/** The fragment for a view: whole canvas pixels and four significant digits of zoom. */
export function formatView(view) {
    const zoom = Number(view.zoom.toPrecision(4));
    return `#x=${Math.round(view.x)}&y=${Math.round(view.y)}&zoom=${zoom}`;
}

/** `fn` called at most once per `ms`, always with the latest arguments after a burst. */
export function throttle(fn, ms) {
    let timer = null;
    let last = 0;
    let pending = null;
    return (...args) => {
        pending = args;
        if (timer !== null) {
            return;
        }
        const wait = Math.max(0, last + ms - Date.now());
        timer = setTimeout(() => {
            timer = null;
            last = Date.now();
            fn(...pending);
        }, wait);
    };
}

/** The item an address names (its `?item=`), or null. Read as written, escapes decoded: an id's `+` is a
 *  plus (ids are 1-128 of `A-Z a-z 0-9 . _ : @ + -`), not the space of a form. */
export function linkedItem(href) {
    const part = new URL(href).search.replace(/^\?/, "").split("&").find((p) => p.startsWith("item="));
    if (!part) {
        return null;
    }
    try {
        return decodeURIComponent(part.slice("item=".length)) || null;
    } catch {
        return null;  // a malformed escape names no item
    }
}

/** The address (path, query, fragment) of `href` naming item `id`: `?item=<id>` and no fragment; for a null
 *  `id`, `href` without its `?item=`. Its other parameters stay as they were written, and the id as it is
 *  (`:`, `@` and `+` are plain in a query; linkedItem reads it back), other characters percent-escaped. */
export function addressNaming(href, id) {
    const url = new URL(href);
    const parts = url.search.replace(/^\?/, "").split("&").filter((part) => part !== "");
    const named = id === null ? []
        : [`item=${encodeURIComponent(id).replace(/%(3A|40|2B)/gi, (escape) => decodeURIComponent(escape))}`];
    const at = parts.findIndex((part) => /^item(=|$)/.test(part));  // an item named already: in its place
    const kept = parts.filter((part) => !/^item(=|$)/.test(part));
    kept.splice(at < 0 ? kept.length : at, 0, ...named);
    const query = kept.length ? `?${kept.join("&")}` : "";
    return `${url.pathname}${query}${id === null ? url.hash : ""}`;
}
