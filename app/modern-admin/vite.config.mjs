import { defineConfig } from "vite";

// No @vitejs/plugin-react: Vite's esbuild already compiles JSX (with React's automatic
// runtime, set here); the plugin would only add fast refresh for development, through Babel.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: { outDir: "dist", emptyOutDir: true },
});
