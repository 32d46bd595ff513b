// The material-variant chooser under the admin's 3D preview: switches <model-viewer>'s KHR_materials_variants.
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-model-viewer-variants]");
  if (!select) return;
  const viewer = select.closest("div, td, fieldset").querySelector("model-viewer");
  if (viewer) viewer.variantName = select.value || null;
});
