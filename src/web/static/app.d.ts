// The page's script, imported as its text (Bun: `with { type: "text" }`) and served as is.
declare const text: string;
export default text;
