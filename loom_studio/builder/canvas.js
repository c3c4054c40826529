// The builder's canvas: an anywidget front-end module (render({ model, el })), plain ESM,
// no dependency. Python (loom_studio/builder/view.py) owns the project: it sends the
// graph to draw ("graph": nodes, edges, positions), the palette and a message; the canvas
// sends back what the user did, as "action" ({kind: "add" | "wire", ...}) and "selected".
//
//   drag a palette entry onto the board (or double-click it): a new agent of that kind;
//   drag from an agent's output port (the dot on its right) onto another agent: wire the
//   first one's topic to the second one's subscription; click an agent: select it;
//   drag an agent: move it.

const NS = "http://www.w3.org/2000/svg";
const W = 168;
const H = 52;
const STATUS = { running: "#2e7d32", idle: "#757575", stalled: "#ef6c00", failed: "#c62828" };

const CSS = `
.loom-builder-root { display: flex; gap: 8px; font: 13px system-ui, sans-serif; }
.loom-palette { width: 170px; flex: none; display: flex; flex-direction: column; gap: 4px; }
.loom-palette b { margin: 4px 0; }
.loom-template { border: 1px solid #90a4ae; border-radius: 4px; padding: 5px 8px;
  background: #eceff1; cursor: grab; user-select: none; }
.loom-frame { flex: 1; min-width: 400px; overflow: auto; border: 1px solid #cfd8dc;
  border-radius: 4px; background: #fafafa; }
.loom-board { display: block; }
.loom-node rect { fill: #fff; stroke: #546e7a; stroke-width: 1.5; rx: 6; }
.loom-node.new rect { stroke-dasharray: 5 3; fill: #fffde7; }
.loom-node.observer rect { fill: #f5f5f5; stroke: #b0bec5; }
.loom-node.selected rect { stroke: #1565c0; stroke-width: 3; }
.loom-node text { font-size: 12px; pointer-events: none; }
.loom-node .sub { fill: #607d8b; font-size: 11px; }
.loom-port { fill: #1565c0; cursor: crosshair; }
.loom-edge { stroke: #90a4ae; stroke-width: 2; fill: none; }
.loom-edge.live { stroke: #43a047; }
.loom-edge-label { font-size: 11px; fill: #37474f; }
.loom-note { min-height: 18px; margin: 4px 0; color: #37474f; }
.loom-note.error { color: #c62828; }
`;

function make(tag, attrs, parent) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function div(className, parent) {
  const node = document.createElement("div");
  node.className = className;
  parent.appendChild(node);
  return node;
}

function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  el.appendChild(style);
  const root = div("loom-builder-root", el);
  const palette = div("loom-palette", root);
  const frame = div("loom-frame", root);
  const board = make("svg", { class: "loom-board", height: 420 }, frame);
  const note = div("loom-note", el);
  const moved = {}; // positions the user dragged to, on top of Python's layout
  let gesture = null; // {kind: "move" | "wire", id, ...}

  const send = (action) => {
    model.set("action", { ...action, n: Date.now() + Math.random() });
    model.save_changes();
  };
  const point = (event) => {
    const box = board.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  const positions = () => ({ ...((model.get("graph") || {}).positions || {}), ...moved });

  function drawPalette() {
    palette.replaceChildren();
    const title = document.createElement("b");
    title.textContent = "Palette";
    palette.appendChild(title);
    for (const entry of model.get("palette") || []) {
      const item = div("loom-template", palette);
      item.textContent = entry.title;
      item.title = `drag onto the board: a new ${entry.title} agent`;
      item.draggable = true;
      item.dataset.template = entry.name;
      item.addEventListener("dragstart", (event) => {
        event.dataTransfer.setData("text/plain", entry.name);
      });
      item.addEventListener("dblclick", () => send({ kind: "add", template: entry.name, x: 30, y: 30 }));
    }
  }

  function drawEdges(graph, at) {
    const labels = {}; // one label per (source, topic), beside the source's port
    for (const edge of graph.edges || []) {
      const from = at[edge.source];
      const to = at[edge.target];
      if (!from || !to) continue;
      const [x1, y1, x2, y2] = [from[0] + W, from[1] + H / 2, to[0], to[1] + H / 2];
      const bend = Math.abs(y2 - y1) < 4 ? -26 : 0; // a straight row: arc above the nodes
      const path = make("path", {
        class: edge.rate > 0 ? "loom-edge live" : "loom-edge",
        d: `M${x1},${y1} C${x1 + 60},${y1 + bend} ${x2 - 60},${y2 + bend} ${x2},${y2}`,
        "marker-end": "url(#loom-arrow)", "data-source": edge.source, "data-target": edge.target,
      }, board);
      make("title", {}, path).textContent =
        `${edge.source} → ${edge.target}: ${edge.topic} (handled as ${edge.pattern})`;
      const key = `${edge.source} ${edge.topic}`;
      const label = labels[key] || (labels[key] = { x: x1 + 12, y: y1 - 9, rate: 0, edge });
      label.rate += edge.rate || 0;
    }
    const used = {};
    for (const { x, y, rate, edge } of Object.values(labels)) {
      const row = (used[edge.source] = (used[edge.source] || 0) + 1) - 1;
      const text = make("text", {
        class: "loom-edge-label", x, y: y - 13 * row, "data-source": edge.source,
        "data-topic": edge.topic,
      }, board);
      text.textContent = rate > 0 ? `${edge.topic}  ${rate.toFixed(1)}/s` : edge.topic;
    }
  }

  function drawNode(node, at) {
    const classes = ["loom-node", node.kind];
    if (node.observer) classes.push("observer");
    if (node.id === model.get("selected")) classes.push("selected");
    const group = make("g", {
      class: classes.join(" "), transform: `translate(${at[0]},${at[1]})`, "data-agent": node.id,
    }, board);
    make("rect", { width: W, height: H }, group);
    make("circle", { cx: 12, cy: 14, r: 5, fill: STATUS[node.status] || "#cfd8dc" }, group);
    make("text", { x: 22, y: 18 }, group).textContent = node.id;
    make("text", { x: 10, y: 38, class: "sub" }, group).textContent = node.subtitle || "";
    group.addEventListener("mousedown", (event) => {
      if (event.target.classList.contains("loom-port")) return;
      gesture = { kind: "move", id: node.id, start: point(event), from: at, moved: false };
    });
    if (node.emits) {
      const port = make("circle", { class: "loom-port", cx: W, cy: H / 2, r: 7 }, group);
      port.addEventListener("mousedown", (event) => {
        event.stopPropagation();
        const line = make("line", {
          class: "loom-edge", x1: at[0] + W, y1: at[1] + H / 2, x2: at[0] + W, y2: at[1] + H / 2,
          "pointer-events": "none", // the node under the pointer gets the mouseup, not the line
        }, board);
        gesture = { kind: "wire", id: node.id, line };
      });
    }
  }

  function draw() {
    const graph = model.get("graph") || {};
    const at = positions();
    board.replaceChildren();
    const defs = make("defs", {}, board);
    const marker = make("marker", {
      id: "loom-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse",
    }, defs);
    make("path", { d: "M0,0 L10,5 L0,10 z", fill: "#78909c" }, marker);
    const bottom = Math.max(420, ...Object.values(at).map((p) => p[1] + H + 30));
    const right = Math.max(frame.clientWidth - 2, ...Object.values(at).map((p) => p[0] + W + 40));
    board.setAttribute("height", bottom);
    board.setAttribute("width", right);
    drawEdges(graph, at);
    for (const node of graph.nodes || []) drawNode(node, at[node.id] || [20, 20]);
    const message = model.get("message") || "";
    note.textContent = message;
    note.className = message.startsWith("error") ? "loom-note error" : "loom-note";
  }

  board.addEventListener("mousemove", (event) => {
    if (!gesture) return;
    const p = point(event);
    if (gesture.kind === "wire") {
      gesture.line.setAttribute("x2", p.x);
      gesture.line.setAttribute("y2", p.y);
    } else {
      const dx = p.x - gesture.start.x;
      const dy = p.y - gesture.start.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) gesture.moved = true;
      if (gesture.moved) {
        moved[gesture.id] = [gesture.from[0] + dx, gesture.from[1] + dy];
        draw();
      }
    }
  });
  board.addEventListener("mouseup", (event) => {
    const done = gesture;
    gesture = null;
    if (!done) return;
    const target = event.target.closest && event.target.closest(".loom-node");
    if (done.kind === "wire") {
      done.line.remove();
      if (target && target.dataset.agent !== done.id) {
        send({ kind: "wire", source: done.id, target: target.dataset.agent });
      }
    } else if (!done.moved) {
      model.set("selected", done.id);
      model.save_changes();
    }
  });
  board.addEventListener("dragover", (event) => event.preventDefault());
  board.addEventListener("drop", (event) => {
    event.preventDefault();
    const template = event.dataTransfer.getData("text/plain");
    const p = point(event);
    if (template) send({ kind: "add", template, x: p.x - W / 2, y: p.y - H / 2 });
  });

  const watched = [
    ["change:palette", drawPalette],
    ["change:graph", draw],
    ["change:selected", draw],
    ["change:message", draw],
  ];
  for (const [name, callback] of watched) model.on(name, callback);
  drawPalette();
  draw();
  // anywidget's contract: render returns its clean-up, called when the view goes (Panel
  // calls whatever render returned: returning nothing throws when the tab is left)
  return () => {
    for (const [name, callback] of watched) model.off(name, callback);
  };
}

export default { render };
