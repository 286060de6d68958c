/** Stylesheets imported for their side effect: Bun.build emits them as <entry>.css. */
declare module "*.css";
