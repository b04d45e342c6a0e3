//! The extractors of the web pages: `WebSession` (signed in, else a
//! redirect to the sign-in page), `AdminSession` (an administrator, else a
//! refusal page), `ClientAddr`, and the CSRF check of forms.
