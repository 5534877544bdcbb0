// Pointing at the books on the wall: the item under a resting pointer is outlined, a click on an item (or
// Enter on the wall, for the item at the centre) opens its card, a search result or a `?item=` link flies to
// its item; the chosen item stays outlined and named in the address bar while its card is open, and follows
// new generations (a re-layout moves it).

import { itemName } from "./card.js";
import { HttpError } from "./live.js";
import { ZOOM_STEP } from "./viewstate.js";

const REST_MS = 150;  // a pointer still for this long asks what is under it (moving, dragging: nothing asked)
export const MIN_CARD_PX = 16;  // an item shown narrower is not pointed at: no outline, a click zooms in
export const FIT_MARGIN = 1;  // a chosen item is flown to with its own size free on each side (a third of the view)

/**
 * The canvas rectangle to fit in a `view` ({width, height}, CSS px) so that `item` shows whole with
 * FIT_MARGIN around it, in the part of the view not `covered` on the right by the card.
 */
export function framing(item, view, covered) {
    const free = covered > 0 && covered < view.width / 2 ? view.width - covered : view.width;
    const aspect = free / view.height;
    let width = item.width * (1 + 2 * FIT_MARGIN);
    let height = item.height * (1 + 2 * FIT_MARGIN);
    if (width / height < aspect) {
        width = height * aspect;
    } else {
        height = width / aspect;
    }
    return {
        x: item.x + item.width / 2 - width / 2,
        y: item.y + item.height / 2 - height / 2,
        width: width * view.width / free,
        height,
    };
}

export class Bookstore {
    constructor({ wall, api, card, highlights, status }) {
        this.wall = wall;
        this.viewer = wall.viewer;
        this.api = api;
        this.card = card;
        this.highlights = highlights;
        this.status = status;
        this.pointer = null;  // {x, y} in CSS px of the wall, while a mouse is over it
        this.restTimer = null;
        this.hoverSeq = 0;  // answers to an older rest are dropped
        this.chosenSeq = 0;
        this.bindEvents();
    }

    bindEvents() {
        const viewer = this.viewer;
        const canvas = viewer.canvas;
        canvas.addEventListener("pointermove", (event) => this.pointerMoved(event), { capture: true });
        canvas.addEventListener("pointerdown", () => this.forgetRest(), { capture: true });
        canvas.addEventListener("pointerleave", () => {
            this.pointer = null;
            this.forgetRest();
            this.showHover(null);
        });
        viewer.addHandler("animation-finish", () => this.rest());  // a wheel zoom moved the wall under the pointer
        viewer.addHandler("canvas-click", (event) => {
            if (!event.quick || event.shift) {
                return;  // a drag, or Shift+click: OpenSeadragon's (pan, zoom out)
            }
            event.preventDefaultAction = true;  // an item's card, else zoom in (clickAt)
            this.clickAt(event.position);
        });
    }

    // -- hover ------------------------------------------------------------------------------------------

    pointerMoved(event) {
        if (event.pointerType === "touch") {
            return;
        }
        const box = this.viewer.canvas.getBoundingClientRect();
        this.pointer = { x: event.clientX - box.left, y: event.clientY - box.top };
        this.forgetRest();
        if (event.buttons === 0) {
            this.restTimer = setTimeout(() => this.rest(), REST_MS);
        }
    }

    forgetRest() {
        clearTimeout(this.restTimer);
        this.restTimer = null;
        this.hoverSeq += 1;
    }

    /** The pointer rests: outline the item under it (one request, none for a pixel asked before). */
    async rest() {
        this.restTimer = null;
        if (this.pointer === null || this.wall.animating) {
            return;  // animation-finish calls again
        }
        const seq = ++this.hoverSeq;
        let item;
        try {
            item = await this.itemAt(this.pointer);
        } catch {
            return;  // a lost server is said by the tile and info.json banners; hover stays quiet
        }
        if (seq === this.hoverSeq) {
            this.showHover(item && this.pointable(item) ? item : null);
        }
    }

    showHover(item) {
        const chosen = this.highlights.item("chosen");
        if (item === null || (chosen && chosen.id === item.id)) {
            this.highlights.hide("hover");
            this.viewer.canvas.classList.remove("over-item");
        } else {
            this.highlights.show("hover", item, itemName(item));
            this.viewer.canvas.classList.add("over-item");
        }
    }

    /** The item drawn at `point` (CSS px of the wall), or null for the background and outside the canvas. */
    itemAt(point) {
        const image = this.viewer.world.getItemAt(0);
        const info = this.wall.info;
        if (!image || !info) {
            return Promise.resolve(null);
        }
        const pixel = image.viewerElementToImageCoordinates(new OpenSeadragon.Point(point.x, point.y));
        const x = Math.floor(pixel.x);
        const y = Math.floor(pixel.y);
        if (!(x >= 0 && y >= 0 && x < info.width && y < info.height)) {
            return Promise.resolve(null);
        }
        return this.api.at(x, y);
    }

    /** Whether `item` is shown big enough to point at (MIN_CARD_PX wide): hover outlines it, a click opens its
     *  card. Smaller (the whole of a big wall), a click zooms in. */
    pointable(item) {
        const image = this.viewer.world.getItemAt(0);
        return item.width * image.viewportToImageZoom(this.viewer.viewport.getZoom(true)) >= MIN_CARD_PX;
    }

    // -- choosing an item --------------------------------------------------------------------------------

    async clickAt(position) {
        let item = null;
        try {
            item = await this.itemAt(position);
        } catch (error) {
            this.status.notify(`Could not ask what is there: ${error.message}`);
            return;
        }
        if (item && this.pointable(item)) {
            this.choose(item);
        } else {
            const viewport = this.viewer.viewport;
            viewport.zoomBy(ZOOM_STEP, viewport.pointFromPixel(position, true));
            viewport.applyConstraints();
        }
    }

    /** Enter on the wall: the card of the item at the centre of the view, with the keyboard in it. */
    async describeCentre() {
        const size = this.viewer.viewport.getContainerSize();
        let item;
        try {
            item = await this.itemAt({ x: size.x / 2, y: size.y / 2 });
        } catch (error) {
            this.status.notify(`Could not ask what is there: ${error.message}`);
            return;
        }
        if (item) {
            this.choose(item, { focus: true });
        } else {
            this.status.notify("No book at the centre of the view: only the background shows there.");
        }
    }

    /**
     * Open `item`'s card, outline it and name it in the address bar; `fly` fits it in the view (at once
     * with `immediately`), `focus` moves the keyboard into the card.
     */
    choose(item, { fly = false, immediately = false, focus = false } = {}) {
        this.chosenSeq += 1;
        this.highlights.show("chosen", item, itemName(item));
        this.showHover(this.highlights.item("hover"));  // no second outline over the chosen one
        this.card.open(item, { focus });
        this.wall.nameItem(item.id);
        if (fly) {
            this.fit(item, immediately);
        }
    }

    /** The card was closed: the item is no longer outlined nor in the address bar. */
    closed() {
        this.chosenSeq += 1;
        this.highlights.hide("chosen");
        this.wall.nameItem(null);
    }

    fit(item, immediately) {
        const image = this.viewer.world.getItemAt(0);
        const size = this.viewer.viewport.getContainerSize();
        const frame = framing(item, { width: size.x, height: size.y }, this.card.coveredWidth());
        const bounds = image.imageToViewportRectangle(frame.x, frame.y, frame.width, frame.height);
        this.viewer.viewport.fitBoundsWithConstraints(bounds, immediately);
    }

    /** `?item=<id>`: open on that item, or say there is none and stay at the start view. */
    async openLinked(id) {
        const seq = this.chosenSeq;
        try {
            const item = await this.api.one(id);
            if (seq === this.chosenSeq) {
                this.choose(item, { fly: true, immediately: true });
            }
        } catch (error) {
            const reason = error instanceof HttpError && error.status === 404
                ? `there is no item “${id}” in ${this.wall.info.dataset}`
                : `could not load item “${id}”: ${error.message}`;
            this.status.notify(`The link names an item, but ${reason}: showing the start view.`);
            if (seq === this.chosenSeq) {
                this.wall.nameItem(null);
            }
        }
    }

    /** A new generation is on show: where the chosen item is now (a diff may move it, retitle it, drop it). */
    async generationShown() {
        this.showHover(null);
        this.rest();
        const chosen = this.card.item;
        if (chosen === null) {
            return;
        }
        const seq = this.chosenSeq;
        try {
            const item = await this.api.one(chosen.id);
            if (seq === this.chosenSeq) {
                this.highlights.show("chosen", item, itemName(item));
                this.card.update(item);
            }
        } catch (error) {
            if (seq === this.chosenSeq && error instanceof HttpError && error.status === 404) {
                this.card.close();
                this.status.notify(`${itemName(chosen)} (item ${chosen.id}) is no longer on the wall.`);
            }
        }
    }
}
