// A sweep axis's values as typed: a list ("0, 1e-4, 1e-3") or a range ("1e-5 … 1e-1, 5 log"),
// read into what POST /api/sweeps takes (AxisIn), and the points a grid range stands for.

// {value: {values} | {low, high, count, scale}} or {error}; `limits` are the spec's
// (form/rules.js: maxAxisValues, axisCount).
export function parseAxisValues(text, limits) {
  const raw = text.trim();
  if (raw === "") return { error: "Enter values: a list or a range." };
  const range = /^(\S+?)\s*(?:…|\.\.\.?)\s*(\S+?)(?:\s*[,;]\s*|\s+|$)(.*)$/.exec(raw);
  if (range) return parseRange(raw, range, limits.axisCount);
  const words = raw.split(/[\s,;]+/).filter(Boolean);
  if (words.length > limits.maxAxisValues) return { error: `At most ${limits.maxAxisValues} values.` };
  const values = [];
  for (const word of words) {
    const number = Number(word);
    if (word === "" || !Number.isFinite(number)) return { error: `"${word}" is not a number.` };
    values.push(number);
  }
  return { value: { values } };
}

function parseRange(raw, [, lowText, highText, rest], count) {
  const low = Number(lowText);
  const high = Number(highText.replace(/,$/, ""));
  if (!Number.isFinite(low) || !Number.isFinite(high) || lowText === "" || highText === "") {
    return { error: `"${raw}": a range is LOW … HIGH, N [log|linear].` };
  }
  if (!(low < high)) return { error: "A range's LOW must be below its HIGH." };
  let points;
  let scale = "linear";
  for (const word of rest.split(/[\s,;]+/).filter(Boolean)) {
    if (/^(log|linear|lin)$/i.test(word)) scale = /^log$/i.test(word) ? "log" : "linear";
    else if (/^\d+$/.test(word) && points === undefined) points = Number(word);
    else return { error: `"${word}": after the range, a count and log or linear.` };
  }
  if (scale === "log" && low <= 0) return { error: "A log range needs LOW above 0." };
  if (points !== undefined && (points < count.min || points > count.max)) {
    return { error: `A range has ${count.min} to ${count.max} values.` };
  }
  return { value: { low, high, count: points, scale } };
}

// An axis as POST /api/sweeps takes it (a range in grid mode with its count of points).
export function axisSpec(path, parsed, mode) {
  if (parsed.values) return { path, values: parsed.values };
  const axis = { path, low: parsed.low, high: parsed.high, scale: parsed.scale };
  if (mode === "grid") axis.count = parsed.count;
  return axis;
}

// The points of a grid range, spaced as app/sweeps.py spaces them; shown under the row.
export function spacedValues({ low, high, count, scale }) {
  const values = [];
  for (let index = 0; index < count; index += 1) {
    const t = index / (count - 1);
    values.push(scale === "log" ? Math.exp(Math.log(low) + t * (Math.log(high) - Math.log(low))) : low + t * (high - low));
  }
  return values.map((value) => Number(value.toPrecision(4)));
}
