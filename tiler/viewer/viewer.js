// The gigatile viewer: OpenSeadragon over /tiles/<dataset>/, configured from the dataset's info.json.
//
// Served at /viewer/ by a render node and at / by the proxy: its own files load relative to the page and
// tiles always come from /tiles/ on the same origin, so it needs no configuration.

import { Card } from "./card.js";
import { Highlights } from "./highlight.js";
import { Bookstore } from "./items.js";
import { ItemsApi } from "./itemsapi.js";
import { keyAction, pageKeyAction } from "./keys.js";
import { fetchJson, pollInfo } from "./live.js";
import { SearchBox } from "./search.js";
import { describeTileFailure, StatusBar } from "./status.js";
import { tileSourceOptions } from "./tilesource.js";
import {
    addressNaming, formatView, linkedItem, parseView, startView, throttle, ZOOM_STEP,
} from "./viewstate.js";

const TILES = new URL("/tiles/", location.href).href;
const DEFAULT_DATASET = "covers";
const DEFAULT_POLL_SECONDS = 5;
const SWAP_TIMEOUT_MS = 20000;  // show a new generation even if some of its tiles never load
const HASH_THROTTLE_MS = 300;

function sameCanvas(a, b) {
    return a.width === b.width && a.height === b.height && a.tile_size === b.tile_size;
}

/**
 * One dataset on show: opens it, follows its generations, keeps the view (or the item named) in the URL.
 * Tells `on(name, callback)` listeners: "opened" (the first image is open), "generation" (a new generation is
 * on show), "describe" and "close" (Enter and Escape on the wall).
 */
class Wall {
    constructor(element, status, namedItem) {
        this.status = status;
        this.info = null;  // the generation shown (or being swapped in)
        this.pendingView = null;  // a view to restore once the image opens
        this.swapping = false;
        this.animating = false;
        this.namedItem = namedItem;  // the item the address names (its card is open), or null: the view
        this.listeners = new Map();
        this.openedOnce = false;
        this.viewer = OpenSeadragon({
            element,
            prefixUrl: "vendor/openseadragon/images/",
            showNavigator: true,
            navigatorPosition: "BOTTOM_RIGHT",
            navigatorAutoFade: false,
            showRotationControl: false,
            showFlipControl: false,
            zoomPerClick: ZOOM_STEP,
            loadTilesWithAjax: true,  // failed tiles then carry their HTTP status and the server's message
            tileRetryMax: 2,
            tileRetryDelay: 1000,
            zoomPerScroll: 1.4,
            maxZoomPixelRatio: 2,
            minZoomImageRatio: 0.8,
            visibilityRatio: 0.2,
            animationTime: 0.8,
            preserveImageSizeOnResize: true,
            // Canvas 2D is GPU-accelerated where there is a GPU and stays fast where there is none (VMs,
            // remote desktops, headless tests), where OSD's WebGL drawer crawls on software GL.
            drawer: "canvas",
            maxTilesPerFrame: 4,  // our tiles are rendered on demand, in parallel: ask for them sooner
            maxImageCacheCount: 400,  // a few levels of a 4K screen
        });
        this.writeHash = throttle(() => this.storeView(), HASH_THROTTLE_MS);
        this.bindEvents();
    }

    bindEvents() {
        const viewer = this.viewer;
        viewer.addHandler("open", () => {
            const view = this.pendingView || this.startView();
            if (view) {
                this.applyView(view, true);
            }
            this.pendingView = null;
            viewer.canvas.focus();
            if (!this.openedOnce) {
                this.openedOnce = true;
                this.emit("opened");
            }
        });
        viewer.addHandler("open-failed", (event) => this.status.showFatal(`Could not open the wall: ${event.message}`));
        viewer.addHandler("viewport-change", () => this.writeHash());
        viewer.addHandler("animation-start", () => { this.animating = true; });
        viewer.addHandler("animation-finish", () => { this.animating = false; });
        viewer.addHandler("tile-load-failed", (event) => {
            if (event.message === "Image load aborted." || !event.maxReached) {
                return;  // a tile no longer needed, or one that will be retried
            }
            this.status.tileFailed(describeTileFailure(event));
        });
        viewer.addHandler("canvas-key", (event) => {
            const action = keyAction(event.originalEvent);
            if (action) {
                event.preventDefaultAction = true;
                this.act(action);
            }
        });
        window.addEventListener("hashchange", () => {
            const view = parseView(location.hash);
            if (view && this.viewer.world.getItemCount()) {
                this.applyView(view, false);
            }
        });
    }

    on(name, callback) {
        this.listeners.set(name, [...(this.listeners.get(name) || []), callback]);
    }

    emit(name) {
        for (const callback of this.listeners.get(name) || []) {
            callback();
        }
    }

    /** Take an answer of info.json: open the first, swap in any later generation. */
    show(info) {
        this.status.setOffline("");
        if (this.info === null) {
            this.open(info, this.namedItem === null ? parseView(location.hash) : null);  // an item: it says where
        } else if (info.generation !== this.info.generation && !this.swapping) {
            if (sameCanvas(info, this.info)) {
                this.replaceImage(info);
            } else {
                this.open(info, this.currentView());
            }
            this.status.showGeneration(info.generation, true);
            this.emit("generation");
        }
    }

    open(info, view) {
        this.info = info;
        this.pendingView = view;
        this.status.showDataset(info);
        this.status.showGeneration(info.generation);
        document.title = `${info.dataset} · gigatile`;
        this.viewer.open(tileSourceOptions(TILES, info));
    }

    /**
     * Show `info` in place of what is on screen without a flash: its tiled image goes on top of the old one,
     * which is removed once the new one has loaded. Tiles whose URL (so version) did not change come from
     * OpenSeadragon's cache; only tiles over changed cells are fetched.
     */
    replaceImage(info) {
        const previous = this.info;
        const world = this.viewer.world;
        const old = Array.from({ length: world.getItemCount() }, (_, i) => world.getItemAt(i));
        this.info = info;
        this.swapping = true;
        this.viewer.addTiledImage({
            tileSource: tileSourceOptions(TILES, info),
            index: world.getItemCount(),
            success: ({ item }) => whenFullyLoaded(item, SWAP_TIMEOUT_MS, () => {
                old.forEach((stale) => world.removeItem(stale));
                this.swapping = false;
            }),
            error: (event) => {
                this.info = previous;  // the next poll tries again
                this.swapping = false;
                this.status.tileFailed(`generation ${info.generation}: ${event.message}`);
            },
        });
    }

    /** Fetch again the tiles that failed, by swapping in the same generation. */
    retry() {
        if (this.info && !this.swapping) {
            this.replaceImage(this.info);
        }
    }

    /** A summary for the console and the browser tests. */
    state() {
        const world = this.viewer.world;
        const images = world.getItemCount();
        let fullyLoaded = images > 0;
        for (let i = 0; i < images; i++) {
            fullyLoaded = fullyLoaded && world.getItemAt(i).getFullyLoaded();
        }
        return {
            dataset: this.info && this.info.dataset,
            generation: this.info && this.info.generation,
            images,
            fullyLoaded,
            animating: this.animating,
            swapping: this.swapping,
            view: this.currentView(),
        };
    }

    currentView() {
        const item = this.viewer.world.getItemAt(0);
        if (!item) {
            return null;
        }
        const viewport = this.viewer.viewport;
        const centre = item.viewportToImageCoordinates(viewport.getCenter());
        return { x: centre.x, y: centre.y, zoom: item.viewportToImageZoom(viewport.getZoom()) };
    }

    /** The view the page opens at (viewstate.startView), or null for the whole wall. */
    startView() {
        const item = this.viewer.world.getItemAt(0);
        const whole = item.viewportToImageZoom(this.viewer.viewport.getHomeZoom());
        return startView(this.info.width, this.info.height, whole);
    }

    /** Do what a key asked for (keys.keyAction). */
    act(action) {
        const viewport = this.viewer.viewport;
        if (action === "zoomIn" || action === "zoomOut") {
            viewport.zoomBy(action === "zoomIn" ? ZOOM_STEP : 1 / ZOOM_STEP);
            viewport.applyConstraints();
        } else if (action === "whole") {
            viewport.goHome();
        } else if (action === "start") {
            const view = this.startView();
            if (view) {
                this.applyView(view, false);
            } else {
                viewport.goHome();
            }
        } else if (action === "actual") {
            const item = this.viewer.world.getItemAt(0);
            viewport.zoomTo(item.imageToViewportZoom(1));
        } else if (action === "describe" || action === "close") {
            this.emit(action);
        }
    }

    applyView(view, immediately) {
        const item = this.viewer.world.getItemAt(0);
        const viewport = this.viewer.viewport;
        viewport.zoomTo(item.imageToViewportZoom(view.zoom), null, immediately);
        viewport.panTo(item.imageToViewportCoordinates(view.x, view.y), immediately);
    }

    storeView() {
        const view = this.pendingView === null && this.namedItem === null ? this.currentView() : null;
        if (view) {
            history.replaceState(history.state, "", formatView(view));
        }
    }

    /** Name item `id` in the address (`?item=`) instead of the view; null goes back to the view. */
    nameItem(id) {
        this.namedItem = id;
        history.replaceState(history.state, "", addressNaming(location.href, id));
        this.storeView();
    }
}

function whenFullyLoaded(item, timeoutMs, callback) {
    let done = false;
    const finish = () => {
        if (!done) {
            done = true;
            item.removeHandler("fully-loaded-change", onChange);
            clearTimeout(timer);
            callback();
        }
    };
    const onChange = (event) => event.fullyLoaded && finish();
    const timer = setTimeout(finish, timeoutMs);
    item.addHandler("fully-loaded-change", onChange);
    if (item.getFullyLoaded()) {
        finish();
    }
}

/** Offer the datasets of /tiles/datasets.json when there are several; a server without it shows none. */
async function showPicker(select, current) {
    let listing;
    try {
        listing = await fetchJson(`${TILES}datasets.json`);
    } catch {
        return;
    }
    const names = (listing.datasets || []).map((entry) => entry.name);
    if (!names.includes(current)) {
        names.unshift(current);
    }
    if (names.length < 2) {
        return;
    }
    for (const name of names) {
        select.add(new Option(name, name, false, name === current));
    }
    select.addEventListener("change", () => {
        const params = new URLSearchParams(location.search);
        params.set("dataset", select.value);
        params.delete("item");  // nor does an item of one wall name one of another
        location.assign(`${location.pathname}?${params}`);  // the view of one wall means nothing on another
    });
    select.closest("label").hidden = false;
    document.getElementById("dataset-name").hidden = true;  // the picker names it
}

/** Hover, click, card, search and `?item=` links over `wall` (items.js, search.js). */
function openBookstore(wall, status, dataset) {
    const api = new ItemsApi(TILES, dataset, () => wall.info && wall.info.generation);
    let bookstore = null;
    const card = new Card(document.getElementById("card"), {
        onClose: () => bookstore.closed(),
        fallbackFocus: () => wall.viewer.canvas,
    });
    bookstore = new Bookstore({ wall, api, card, highlights: new Highlights(wall.viewer), status });
    const search = new SearchBox(document.getElementById("search"), api, {
        onPick: (item) => bookstore.choose(item, { fly: true, focus: true }),
        onLeave: () => wall.viewer.canvas.focus(),
    });
    wall.on("generation", () => bookstore.generationShown());
    wall.on("describe", () => bookstore.describeCentre());
    wall.on("close", () => card.close());
    document.addEventListener("keydown", (event) => {
        if (pageKeyAction(event) === "search") {
            event.preventDefault();
            search.focus();
        }
    }, { capture: true });
    return bookstore;
}

function main() {
    const status = new StatusBar(document);
    const params = new URLSearchParams(location.search);
    const dataset = params.get("dataset") || DEFAULT_DATASET;
    const pollSeconds = Math.max(0.5, Number(params.get("poll")) || DEFAULT_POLL_SECONDS);
    if (!window.OpenSeadragon) {
        status.showFatal("OpenSeadragon is missing from vendor/openseadragon/: install it with `make viewer`.");
        return;
    }
    const linked = linkedItem(location.href);
    const wall = new Wall(document.getElementById("view"), status, linked);
    status.onRetry(() => wall.retry());
    const bookstore = openBookstore(wall, status, dataset);
    if (linked !== null) {
        wall.on("opened", () => bookstore.openLinked(linked));
    }
    showPicker(document.getElementById("dataset"), dataset);
    const infoUrl = `${TILES}${encodeURIComponent(dataset)}/info.json`;
    pollInfo(infoUrl, pollSeconds, {
        onInfo: (info) => {
            const recovered = status.offline !== "";
            wall.show(info);
            if (recovered && status.failures) {  // tiles that failed while the server was away
                status.clearFailures();
                wall.retry();
            }
        },
        onError: (error) => {
            const problem = `dataset “${dataset}”: ${error.message}; retrying every ${pollSeconds} s`;
            if (wall.info === null) {
                status.showFatal(`Could not load ${problem}`);
            } else {
                status.setOffline(`Lost touch with the server (${problem})`);
            }
        },
    });
    // for the console and the browser tests
    window.gigatile = {
        wall, viewer: wall.viewer, bookstore, state: () => wall.state(), failures: () => status.failures,
    };
}

main();
