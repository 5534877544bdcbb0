// What a key does on the wall, beyond OpenSeadragon's own panning (arrows, W A S D), and on the page.
//
// OpenSeadragon zooms 1 % a frame while a zoom key is held (about 10 % a tap: some 60 taps from a readable
// view to 1:1); here a tap is one ZOOM_STEP, like a click. Rotation and mirroring (R, F) are turned off: a
// wall of books is not read sideways.

const ACTIONS = {
    Equal: "zoomIn", NumpadAdd: "zoomIn",
    Minus: "zoomOut", NumpadSubtract: "zoomOut",
    Digit0: "whole", Numpad0: "whole",
    KeyH: "start", Home: "start",
    Digit1: "actual", Numpad1: "actual",
    KeyR: "blocked", KeyF: "blocked",
    Enter: "describe", NumpadEnter: "describe",
    Escape: "close",
};
const SHIFTED = { KeyW: "zoomIn", ArrowUp: "zoomIn", KeyS: "zoomOut", ArrowDown: "zoomOut" };

/**
 * The action of a keydown on the wall: "zoomIn", "zoomOut" (one step), "whole" (the whole wall), "start" (the
 * view the page opens at), "actual" (1:1 at the centre), "describe" (the card of the item at the centre),
 * "close" (the card), "blocked" (swallowed), or null (left to OpenSeadragon).
 * Keys with Ctrl, Alt or Meta are the browser's (Ctrl + zooms the page).
 */
export function keyAction(event) {
    if (event.ctrlKey || event.altKey || event.metaKey) {
        return null;
    }
    if (event.shiftKey && SHIFTED[event.code]) {
        return SHIFTED[event.code];
    }
    return ACTIONS[event.code] || null;
}

/** The action of a keydown anywhere on the page: "search" (`/`: to the search box, unless typing in a field),
 *  or null. */
export function pageKeyAction(event) {
    if (event.ctrlKey || event.altKey || event.metaKey || event.key !== "/") {
        return null;
    }
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable
        || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    return typing ? null : "search";
}
