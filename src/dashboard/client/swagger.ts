/**
 * Starts Swagger UI on /swagger. The bundle (swagger-ui-dist, served from our origin) defines
 * the SwaggerUIBundle global; this file is our own script because the page's policy allows
 * no inline script.
 */
import "./swagger.css";

declare const SwaggerUIBundle: ((options: Record<string, unknown>) => unknown) & {
  presets: { apis: unknown };
};

const root = document.getElementById("swagger-ui");
if (root) {
  SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    // The default validator badge would call validator.swagger.io: nothing leaves our origin.
    validatorUrl: null,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
}
