/*
 * changeloop: send approval decision. Outbound Business Rule on sysapproval_approver.
 *
 * @name       changeloop: send approval decision
 * @table      sysapproval_approver
 * @when       after
 * @order      100
 * @insert     false
 * @update     true
 * @condition  (current.state.changesTo('approved') || current.state.changesTo('rejected')) && current.source_table == 'change_request'
 *
 * Tells changeloop that an approver decided on a change's approval record, so a change workflow waiting at
 * its gate checks ServiceNow's approval records now instead of at its next poll. changeloop reads the
 * sysapproval_approver record itself before it believes the decision.
 *
 * POST {x_changeloop.shim_url}/api/servicenow/approval
 * Authorization: Bearer {x_changeloop.webhook_token}   (the `servicenow` principal: scope change:webhook)
 *
 * The JSON body has exactly these fields (the sandbox emulator sends the same set:
 * sandbox/outbound_rules.py):
 *   number, sys_id, approval_sys_id, approval, approver, comments
 * number and sys_id are the change's; approval_sys_id is this approval record's; approval is the decision
 * (approved or rejected); approver is the approving user's user_name; comments is the comment entered with
 * the decision (empty when none).
 */
(function executeRule(current, previous /*null when async*/) {
    var shimUrl = gs.getProperty('x_changeloop.shim_url', '');
    var token = gs.getProperty('x_changeloop.webhook_token', '');
    if (!shimUrl || !token) {
        gs.warn('changeloop: x_changeloop.shim_url or x_changeloop.webhook_token is not set; approval ' +
            current.getUniqueValue() + ' was not sent');
        return;
    }
    var change = current.sysapproval.getRefRecord();

    var body = {};
    body.number = change.getValue('number') || '';
    body.sys_id = current.getValue('document_id') || current.getValue('sysapproval') || '';
    body.approval_sys_id = current.getUniqueValue();
    body.approval = current.getValue('state') || '';
    body.approver = current.approver.user_name.toString();
    // The journal entry made with this update (the field reads empty when the approver wrote no comment).
    body.comments = current.comments.toString();

    try {
        var request = new sn_ws.RESTMessageV2('changeloop shim', 'post');
        request.setEndpoint(shimUrl + '/api/servicenow/approval');
        request.setHttpMethod('POST');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Authorization', 'Bearer ' + token);
        request.setRequestBody(JSON.stringify(body));
        request.executeAsync();
    } catch (e) {
        gs.error('changeloop: could not send the approval of ' + body.number + ': ' + e.message);
    }
})(current, previous);
