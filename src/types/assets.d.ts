// Prebuilt BPF objects imported as embedded files (Bun: `with { type: "file" }` yields a path).
declare module "*.bpf.o" {
  const path: string;
  export default path;
}

// Tables shared with the C side (Bun: `with { type: "text" }` yields the file's text).
declare module "*.def" {
  const text: string;
  export default text;
}

// The web view's style sheet (src/web/static), embedded as text.
declare module "*.css" {
  const text: string;
  export default text;
}
