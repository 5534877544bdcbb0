// Rectangles drawn over items on the wall, as OpenSeadragon overlays (they pan and zoom with the wall): one
// for the item under the pointer, one for the chosen item (whose card is open).

export const MARKS = ["hover", "chosen"];

export class Highlights {
    constructor(viewer) {
        this.viewer = viewer;
        this.shown = new Map();  // mark -> the item it outlines
        this.elements = new Map(MARKS.map((mark) => [mark, makeElement(mark)]));
        // OpenSeadragon drops every overlay when it opens an image (a reopened wall of another size)
        viewer.addHandler("open", () => {
            for (const [mark, item] of this.shown) {
                this.place(mark, item);
            }
        });
    }

    /** Outline `item` ({x, y, width, height} in canvas pixels) with `mark`, labelled `label`. */
    show(mark, item, label) {
        const element = this.elements.get(mark);
        element.querySelector(".item-label").textContent = label;
        element.dataset.item = String(item.id);
        this.shown.set(mark, item);
        this.place(mark, item);
    }

    hide(mark) {
        if (this.shown.delete(mark)) {
            const element = this.elements.get(mark);
            delete element.dataset.item;
            this.viewer.removeOverlay(element);
        }
    }

    /** The item `mark` outlines, or null. */
    item(mark) {
        return this.shown.get(mark) || null;
    }

    place(mark, item) {
        const image = this.viewer.world.getItemAt(0);
        if (!image) {
            return;
        }
        const element = this.elements.get(mark);
        const location = image.imageToViewportRectangle(item.x, item.y, item.width, item.height);
        if (this.viewer.getOverlayById(element)) {
            this.viewer.updateOverlay(element, location);
        } else {
            this.viewer.addOverlay({ element, location });
        }
    }
}

function makeElement(mark) {
    const element = document.createElement("div");
    element.className = `item-mark item-${mark}`;
    element.setAttribute("aria-hidden", "true");  // the card and the search results say it in words
    const label = document.createElement("span");
    label.className = "item-label";
    element.append(label);
    return element;
}
