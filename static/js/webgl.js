// Whether this browser can draw Plotly's WebGL charts (parcoords, scattergl, splom, the 3-D
// traces). Headless browsers, remote desktops and many VMs cannot; Plotly then covers the
// chart with a notice that links to the internet. Every page asks here before it draws
// such a trace, and draws something that needs no WebGL instead.
/* global Plotly */

// Plotly trace types drawn with WebGL.
export const WEBGL_TYPES = new Set([
  "parcoords", "scattergl", "scatterpolargl", "splom", "heatmapgl", "pointcloud", "contourgl",
  "scatter3d", "surface", "mesh3d", "cone", "streamtube", "volume", "isosurface",
]);
// The extensions Plotly's WebGL traces ask regl for: a context without them fails too.
const EXTENSIONS = ["ANGLE_instanced_arrays", "OES_element_index_uint"];
let supported;

export function hasWebGL() {
  if (supported !== undefined) return supported;
  try {
    const canvas = document.createElement("canvas");
    const gl = canvas.getContext("webgl") ?? canvas.getContext("experimental-webgl");
    supported = Boolean(gl) && EXTENSIONS.every((name) => gl.getExtension(name) !== null);
    gl?.getExtension("WEBGL_lose_context")?.loseContext(); // give the context back at once
  } catch {
    supported = false;
  }
  return supported;
}

export const needsWebGL = (data) => data.some((trace) => WEBGL_TYPES.has(trace.type));

// Draw with Plotly.react when the data can be drawn here; else (or when Plotly put up its
// no-WebGL notice anyway, e.g. a context it could not get) clear the chart and return
// false, so that the caller shows its fallback.
export async function reactIfDrawable(div, data, layout, config) {
  if (needsWebGL(data) && !hasWebGL()) {
    clearChart(div);
    return false;
  }
  await Plotly.react(div, data, layout, config);
  if (div.querySelector(".no-webgl")) {
    supported = false;
    clearChart(div);
    return false;
  }
  return true;
}

function clearChart(div) {
  if (div.classList.contains("js-plotly-plot")) Plotly.purge(div);
  div.onclick = null; // Plotly's notice opens a web page on a click
  div.replaceChildren();
  div.style.background = "";
}
