// Prebuilt BPF objects imported as embedded files (Bun: `with { type: "file" }` yields a path).
declare module "*.bpf.o" {
  const path: string;
  export default path;
}
