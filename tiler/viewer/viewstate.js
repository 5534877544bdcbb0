// The view kept in the URL fragment: "#x=<canvas x>&y=<canvas y>&zoom=<screen px per canvas px>".
// x and y are the canvas pixel at the centre of the view; zoom 1 shows the canvas 1:1.

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
