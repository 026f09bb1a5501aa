// Build the widget front ends into labkit/widgets/static/ (or the folder given as argument).
//
//   node build.mjs [outdir]
//
// The output is committed so that `pip install labkit` needs no Node. It must be a pure function
// of the sources and the locked esbuild/sortablejs versions: no timestamps, no absolute paths
// (scripts/build_widgets.sh --check rebuilds and compares byte for byte).

import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] ?? path.join(here, "..", "labkit", "widgets", "static"));

const banner =
  "/* labkit ranking widget, built from widgets/src by scripts/build_widgets.sh; do not edit. */";

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  target: ["es2020"],
  // Keep the licence header of bundled code (SortableJS, MIT) at the end of the file.
  legalComments: "eof",
  banner: { js: banner, css: banner },
  charset: "utf8",
  logLevel: "warning",
};

await build({
  ...common,
  entryPoints: ["src/ranker.js"],
  format: "esm",
  platform: "browser",
  outfile: path.join(outdir, "ranker.js"),
});

await build({
  ...common,
  entryPoints: ["src/ranker.css"],
  outfile: path.join(outdir, "ranker.css"),
});
