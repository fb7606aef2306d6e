// Starts Swagger UI on /docs. A separate file, not an inline script, so the
// page's Content-Security-Policy can allow scripts from self only.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default sends the document to an outside validator service: the
  // document is validated in CI instead, and no request leaves the origin.
  validatorUrl: null,
  // Tokens stay in page memory only; a reload asks for them again.
  persistAuthorization: false,
  displayRequestDuration: true,
});
