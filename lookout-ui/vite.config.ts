import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The built UI is part of the Python package, so `pip install` needs no Node. scripts/check-ui
// builds elsewhere (LOOKOUT_UI_OUT) to compare with what is committed.
const outDir =
  process.env.LOOKOUT_UI_OUT ?? fileURLToPath(new URL("../flotilla/lookout/ui_dist", import.meta.url));

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir, emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/api": "http://127.0.0.1:10000" } },
});
