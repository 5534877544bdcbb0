// Fetching JSON from the server, and polling a dataset's info.json so an open viewer follows new generations
// without a reload.

/** An answer of the server that is not a success: its status, and a message naming it and the server's reason. */
export class HttpError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

/** GET `url` as JSON (not from the browser's cache unless `init` says otherwise); throws an HttpError naming
 *  the HTTP status and the server's message. */
export async function fetchJson(url, init = { cache: "no-store" }) {
    const response = await fetch(url, init);
    if (!response.ok) {
        const text = (await response.text()).trim().split("\n")[0].slice(0, 160);
        throw new HttpError(response.status, `HTTP ${response.status}${text ? ` ${text}` : ""}`);
    }
    return response.json();
}

/**
 * Fetch `url` now and then every `seconds` (skipped while the page is hidden, at once when it shows again);
 * `onInfo(info)` gets each answer, `onError(error)` each failure. Returns a function that stops the polling.
 */
export function pollInfo(url, seconds, { onInfo, onError }) {
    let timer = null;
    let stopped = false;
    let busy = false;
    const tick = async () => {
        if (stopped || busy) {
            return;
        }
        clearTimeout(timer);
        busy = true;
        if (!document.hidden) {
            try {
                onInfo(await fetchJson(url));
            } catch (error) {
                onError(error);
            }
        }
        busy = false;
        if (!stopped) {
            timer = setTimeout(tick, seconds * 1000);
        }
    };
    const onVisible = () => {
        if (!document.hidden) {
            tick();
        }
    };
    document.addEventListener("visibilitychange", onVisible);
    tick();
    return () => {
        stopped = true;
        clearTimeout(timer);
        document.removeEventListener("visibilitychange", onVisible);
    };
}
