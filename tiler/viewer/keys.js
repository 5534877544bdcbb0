// What a key does on the wall, beyond OpenSeadragon's own panning (arrows, W A S D).
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
};
const SHIFTED = { KeyW: "zoomIn", ArrowUp: "zoomIn", KeyS: "zoomOut", ArrowDown: "zoomOut" };

/**
 * The action of a keydown: "zoomIn", "zoomOut" (one step), "whole" (the whole wall), "start" (the view the
 * page opens at), "actual" (1:1 at the centre), "blocked" (swallowed), or null (left to OpenSeadragon).
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
