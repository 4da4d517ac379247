// Client script of core:RandomNumber (an ES module loaded by the editor with import()).
//
// The editor calls setupClientNode(vueFlow, nodeProps, ctx) once per rendered node, with
// ctx = { updateInputValue, getNodeInputValue, setNodeOutputValue, ref, watch }. The object it
// returns may provide hooks: onButtonClick(inputKey) for button widgets, and
// onWorkflowExecute({ nodeId, workflowContext }), awaited before every full run.
//
// The server only outputs the stored value, so all changes to it happen here: "随机" draws a new
// number before each run, "增加"/"减少" step it by one (wrapping within 0..2^32-1), "固定" keeps it.

const MAX_VALUE = 4294967295; // 2^32 - 1, the widget's max
const RANGE = MAX_VALUE + 1;

/** A uniformly distributed integer in 0..2^32-1 from the browser's CSPRNG. */
function randomUint32() {
  const buffer = new Uint32Array(1);
  globalThis.crypto.getRandomValues(buffer);
  return buffer[0];
}

/** The stored value as an integer in range (0 when missing or unusable). */
function currentValue(ctx) {
  const raw = Number(ctx.getNodeInputValue("value"));
  if (!Number.isFinite(raw)) return 0;
  const whole = Math.trunc(raw);
  return ((whole % RANGE) + RANGE) % RANGE;
}

/** The next value for a mode, or null when the value must not change. */
function nextValue(mode, value) {
  switch (mode) {
    case "随机":
      return randomUint32();
    case "增加":
      return (value + 1) % RANGE;
    case "减少":
      return (value - 1 + RANGE) % RANGE;
    default: // "固定" and anything unknown
      return null;
  }
}

export function setupClientNode(vueFlow, nodeProps, ctx) {
  return {
    onButtonClick(inputKey) {
      if (inputKey === "reroll") {
        ctx.updateInputValue("value", randomUint32());
      }
    },
    onWorkflowExecute() {
      const next = nextValue(ctx.getNodeInputValue("mode"), currentValue(ctx));
      if (next !== null) {
        ctx.updateInputValue("value", next);
      }
    },
  };
}
