// What the viewer tells its user: the dataset and generation on show, problems (tiles that failed to load, a
// server that does not answer) in a small banner instead of silent grey squares, and notices (a link to an
// item that is not there).

function formatPixels(width, height) {
    const pixels = width * height;
    const amount = pixels >= 1e9 ? `${(pixels / 1e9).toFixed(1)} Gpx` : `${(pixels / 1e6).toFixed(1)} Mpx`;
    return `${width.toLocaleString("en")} × ${height.toLocaleString("en")} px (${amount})`;
}

/** A tile failure as one short line: the HTTP status and the server's own message when it sent one. */
export function describeTileFailure(event) {
    const request = event.tileRequest;
    const where = event.tile ? `${event.tile.level}/${event.tile.x}/${event.tile.y}` : "a tile";
    if (!request || !request.status) {
        return `${where}: ${(event.message || "network error").replace(/^\[\w+\]\s*/, "")}`;
    }
    let text = "";
    try {
        const body = request.response;
        text = typeof body === "string" ? body : new TextDecoder().decode(body);
    } catch {
        text = request.statusText || "";
    }
    text = text.trim().split("\n")[0].slice(0, 160);
    return `${where}: HTTP ${request.status}${text ? ` ${text}` : ""}`;
}

export class StatusBar {
    constructor(root) {
        this.name = root.querySelector("#dataset-name");
        this.size = root.querySelector("#dataset-size");
        this.generation = root.querySelector("#generation");
        this.banner = root.querySelector("#problems");
        this.bannerText = root.querySelector("#problems-text");
        this.retryButton = root.querySelector("#problems-retry");
        this.fatal = root.querySelector("#fatal");
        this.failures = 0;
        this.lastFailure = "";
        this.offline = "";
        this.notice = root.querySelector("#notice");
        this.noticeText = root.querySelector("#notice-text");
        root.querySelector("#problems-close").addEventListener("click", () => this.clearFailures());
        root.querySelector("#notice-close").addEventListener("click", () => { this.notice.hidden = true; });
    }

    /** Tell the user something that went not as asked (an unknown item in a link), until dismissed. */
    notify(message) {
        this.noticeText.textContent = message;
        this.notice.hidden = false;
    }

    showDataset(info) {
        this.name.textContent = info.dataset;
        this.size.textContent = formatPixels(info.width, info.height);
        this.fatal.hidden = true;
        document.body.classList.remove("no-wall");
    }

    /** Show `generation`; `fresh` marks a new generation arriving while the page is open. */
    showGeneration(generation, fresh = false) {
        this.generation.textContent = `generation ${generation}`;
        this.generation.dataset.generation = String(generation);
        if (fresh) {
            this.generation.classList.remove("fresh");
            void this.generation.offsetWidth;  // restart the highlight animation
            this.generation.classList.add("fresh");
        }
    }

    /** A problem that keeps the wall from showing at all (no info.json yet, no OpenSeadragon). */
    showFatal(message) {
        this.fatal.textContent = message;
        this.fatal.hidden = false;
        document.body.classList.add("no-wall");
    }

    tileFailed(description) {
        this.failures += 1;
        this.lastFailure = description;
        this.render();
    }

    setOffline(message) {
        this.offline = message;
        this.render();
    }

    clearFailures() {
        this.failures = 0;
        this.lastFailure = "";
        this.render();
    }

    onRetry(callback) {
        this.retryButton.addEventListener("click", () => {
            this.clearFailures();
            callback();
        });
    }

    render() {
        const parts = [];
        if (this.offline) {
            parts.push(this.offline);
        }
        if (this.failures) {
            const tiles = this.failures === 1 ? "1 tile" : `${this.failures} tiles`;
            parts.push(`${tiles} failed to load (last: ${this.lastFailure})`);
        }
        this.bannerText.textContent = parts.join(" · ");
        this.banner.dataset.failures = String(this.failures);
        this.retryButton.hidden = this.failures === 0;
        this.banner.hidden = parts.length === 0;
    }
}
