// The entry of web/vendor/litert.js: `make web` bundles LiteRT.js' public API from npm into
// one classic script (global `LiteRT`) that the page's worker loads with importScripts.
export { Tensor, loadAndCompile, loadLiteRt } from "@litertjs/core";
