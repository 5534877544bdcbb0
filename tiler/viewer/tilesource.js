// The OpenSeadragon tile source of one generation of a dataset, built from its /tiles/<ds>/info.json.
//
// Levels line up one to one: OpenSeadragon's level L is drawn at scale 2^(L - maxLevel) and ours, z, at
// 2^(z - top_level), so with minLevel 0 and maxLevel top_level, L = z. Level sizes agree too: OSD's level L
// has ceil(width / 2^(top - L) / 256) tiles across, as ours do, and it draws only the part of an edge tile
// that lies inside the canvas (our edge tiles are full 256 x 256 with background outside).

/** The version of tile (z, x, y): the newest generation among the 4096-px cells under its footprint. */
export function tileVersion(info, z, x, y) {
    const versions = info.versions;
    if (!versions) {
        return null;
    }
    const span = info.tile_size * 2 ** (info.top_level - z);  // canvas pixels per tile side at level z
    const x0 = x * span;
    const y0 = y * span;
    const x1 = Math.min(x0 + span, info.width);
    const y1 = Math.min(y0 + span, info.height);
    const size = versions.cell_size;
    const cx0 = Math.floor(x0 / size);
    const cy0 = Math.floor(y0 / size);
    const cx1 = Math.max(Math.ceil(x1 / size), cx0 + 1);
    const cy1 = Math.max(Math.ceil(y1 / size), cy0 + 1);
    let newest = -1;
    for (let cy = cy0; cy < Math.min(cy1, versions.rows); cy++) {
        const row = versions.cells[cy];
        for (let cx = cx0; cx < Math.min(cx1, versions.cols); cx++) {
            newest = Math.max(newest, row[cx]);
        }
    }
    return newest >= 0 ? newest : info.generation;
}

/** The URL of tile (z, x, y) under `tilesBase` (".../tiles/"), with its version so caches may keep it. */
export function tileUrl(tilesBase, info, z, x, y, format = "jpg") {
    const version = tileVersion(info, z, x, y);
    const query = version === null ? "" : `?v=${version}`;
    return `${tilesBase}${encodeURIComponent(info.dataset)}/${z}/${x}/${y}.${format}${query}`;
}

/** Options for `viewer.open` / `addTiledImage`: a custom OpenSeadragon tile source over `info`. */
export function tileSourceOptions(tilesBase, info, format = "jpg") {
    return {
        width: info.width,
        height: info.height,
        tileSize: info.tile_size,
        tileOverlap: 0,
        minLevel: 0,
        maxLevel: info.top_level,
        getTileUrl: (level, x, y) => tileUrl(tilesBase, info, level, x, y, format),
    };
}
